"""Bytes per token autograd saves for backward in one decoder block, for each family's tiny config in
studio's catalog (builtin:tiny-<family>), built as studio's trainer builds it: PEFT adapters in fp32 on
all-linear (vision towers excluded), TRL's fused LM head, bf16 under autocast. Prints one JSON line.

One block's bytes are what a 3-block model saves beyond a 2-block one (the weights and whatever does
not grow with tokens cancel), at 128, 256 and 512 tokens, for each kind of block a hybrid has (all three
blocks of that kind): a block saves `linear` bytes per token, plus
`quadratic` bytes per token and per token it attends to (eager attention keeps its scores). Run by tests/test_estimate.py in its own
process (it imports the training stack):

    python tests/saved_bytes.py [FAMILY ...]      (default: every tiny family)
    python tests/saved_bytes.py --dpo             (one block in a DPO step: chosen and rejected together)
"""

from __future__ import annotations

import copy
import json
import sys
import tempfile
import warnings

import torch

warnings.filterwarnings("ignore")
METHODS = ("full", "lora", "qlora")
TOKENS = (128, 256, 512)


KIND_KEYS = ("layer_types", "layers_block_type")  # a hybrid's blocks by kind (Nemotron-H names them its own way)


def kinds(config: dict) -> list[str | None]:
    """The kinds of block a hybrid model has, in order (attention, linear attention, Mamba, convolution...);
    [None] for a model of one kind."""
    text = config.get("text_config", config)
    found = next((text[k] for k in KIND_KEYS if isinstance(text.get(k), list)), None) or []
    unique = list(dict.fromkeys(found))
    return unique if len(unique) > 1 else [None]


def with_layers(config: dict, layers: int, kind: str | None) -> dict:
    """The config with `layers` blocks, all of `kind` (a hybrid's), or all of the first block's kind."""
    config = copy.deepcopy(config)
    text = config.get("text_config", config)
    text["num_hidden_layers"] = layers
    for key in ("layer_types", "mlp_only_layers", "layers_block_type"):
        if kind is not None and key in text:
            text[key] = [kind] * layers
        else:
            text.pop(key, None)
    if "first_k_dense_replace" in text:  # DeepSeek: every block alike (the first's kind)
        text["first_k_dense_replace"] = layers
    return config


def build(config: dict, method: str):
    from transformers import AutoConfig, BitsAndBytesConfig
    from trl.trainer.utils import add_fused_lm_head

    from studio.anatomy.lora_targets import lora_targets, wrap
    from studio.anatomy.model_class import model_class

    fields = dict(config)
    hf_config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    auto = model_class(hf_config)  # as studio's trainer loads it
    torch.manual_seed(0)
    if method == "qlora":
        folder = tempfile.mkdtemp()
        auto.from_config(hf_config, dtype=torch.bfloat16).save_pretrained(folder)
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=torch.bfloat16)
        model = auto.from_pretrained(folder, dtype=torch.bfloat16, quantization_config=quant)
    else:
        model = auto.from_config(hf_config, dtype=torch.bfloat16)
    model.config.use_cache = False
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    if method != "full":
        for p in model.parameters():
            p.requires_grad = False

        def skeleton():
            with torch.device("meta"):
                return auto.from_config(hf_config)

        model = wrap(model, 16, lora_targets(skeleton).modules, lora_dropout=0.0)  # what studio's trainer wraps
        model.enable_input_require_grads()
    model.train()
    return model


def saved_by(step) -> int:
    """Bytes of the storages autograd keeps for backward while `step()` runs (bf16 under autocast)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.device.type != "meta":
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        step()
    return sum(seen.values())


def saved(model, vocab: int, tokens: int) -> int:
    ids = torch.randint(3, vocab, (1, tokens), generator=torch.Generator().manual_seed(tokens))
    return saved_by(lambda: model(input_ids=ids, labels=ids, fused_lm_head=True))


def totals(config: dict, method: str, layers: int, kind: str | None) -> tuple[list[int], int]:
    """Saved bytes at each token count, and the parameters of the model's last block."""
    from studio.anatomy.read import decoder_layers

    model = build(with_layers(config, layers, kind), method)
    vocab = (config.get("text_config") or config)["vocab_size"]
    last = decoder_layers(model)[1][-1]
    return [saved(model, vocab, n) for n in TOKENS], sum(p.numel() for p in last.parameters())


def block_bytes(config: dict, method: str, kind: str | None) -> dict:
    """One block's saved bytes at each token count, fitted as linear * T + quadratic * T^2 (the constant
    part, if any, cancels between the first two)."""
    (two, _), (three, params) = totals(config, method, 2, kind), totals(config, method, 3, kind)
    block = [c - b for b, c in zip(two, three)]
    (t0, t1, t2), (s0, s1, s2) = TOKENS, block
    # Differences remove a constant: s1 - s0 = a (t1 - t0) + q (t1^2 - t0^2), likewise s2 - s1.
    q = ((s2 - s1) / (t2 - t1) - (s1 - s0) / (t1 - t0)) / ((t2 + t1) - (t1 + t0))
    a = (s1 - s0) / (t1 - t0) - q * (t1 + t0)
    return {"linear": a, "quadratic": q, "saved": dict(zip(map(str, TOKENS), block)), "params": params}


def main(families: list[str]) -> None:
    from studio.planning.catalog import catalog_models, lookup_model

    families = families or [s.id.removeprefix("builtin:tiny-") for s in catalog_models() if s.id.startswith("builtin:tiny-")]
    real_autocast = torch.is_autocast_enabled
    result = {}
    for family in families:
        # PEFT's 4-bit layer skips the fp32 cast when CUDA autocast is on; make the CPU take that path for QLoRA.
        result[family] = []
        config = lookup_model(f"builtin:tiny-{family}").config
        for kind in kinds(config):
            measured = {}
            for method in METHODS:
                torch.is_autocast_enabled = (lambda *a: True) if method == "qlora" else real_autocast
                measured[method] = block_bytes(config, method, kind)
            result[family].append({"kind": kind, "params": measured["full"]["params"], "methods": measured})
    print(json.dumps({"saved_per_token": result}))




def dpo_step_saves(config: dict, layers: int, pairs: int = 4) -> tuple[int, int, int, int]:
    """(bytes autograd saves in one DPO loss computation, bytes it saves in SFT's forward of the same rows,
    sequences in the batch, their padded length): TRL's DPOTrainer on the tiny model with LoRA (the reference
    is the model with its adapter off), one batch of its own collating, under the saved-tensor hooks."""
    import json as _json
    from pathlib import Path as _Path

    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoConfig, AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    from studio.trainer.tiny import train_tokenizer

    rows = [_json.loads(line) for line in (_Path(__file__).parent.parent / "profiles" / "data" /
                                           "tiny-preference.jsonl").read_text().splitlines()][:pairs]
    tokenizer = train_tokenizer(rows, 512)
    fields = with_layers(config, layers, None)
    fields.update(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                  bos_token_id=tokenizer.bos_token_id)
    hf_config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(hf_config, dtype=torch.bfloat16)  # as the SFT blocks are measured
    args = DPOConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=pairs, max_length=64, use_cpu=True,
                     bf16=False, report_to=[], disable_tqdm=True, save_strategy="no", max_steps=1)
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                                task_type="CAUSAL_LM"))
    trainer.model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    dpo = saved_by(lambda: trainer.compute_loss(trainer.model, batch))
    sft = saved_by(lambda: trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                      labels=batch["input_ids"], fused_lm_head=True, use_cache=False))
    return dpo, sft, int(batch["input_ids"].shape[0]), int(batch["input_ids"].shape[1])


def dpo_main() -> None:
    """One decoder block's saved bytes in a DPO step of the tiny Llama (bf16 under autocast, LoRA; 3 blocks less
    2), and in SFT's forward of the same batch: the estimate counts DPO as SFT's forward of chosen and rejected
    together, the reference adding nothing (its pass keeps no graph)."""
    from studio.planning.catalog import lookup_model

    config = lookup_model("builtin:tiny-llama").config
    (dpo2, sft2, sequences, length), (dpo3, sft3, _, length3) = dpo_step_saves(config, 2), dpo_step_saves(config, 3)
    print(json.dumps({"dpo_block_bytes": dpo3 - dpo2, "sft_block_bytes": sft3 - sft2, "sequences": sequences,
                      "length": length, "same_batch": length == length3}))


if __name__ == "__main__":
    if sys.argv[1:] == ["--dpo"]:
        dpo_main()
    else:
        main(sys.argv[1:])
