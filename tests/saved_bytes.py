"""Bytes per token autograd saves for backward in a small Llama, as studio's trainer builds it
(PEFT adapters in fp32, TRL's fused LM head, bf16 under autocast). Prints one JSON line.

Run by tests/test_estimate.py in its own process (it imports the training stack)."""

from __future__ import annotations

import json
import warnings

import torch

warnings.filterwarnings("ignore")
SHAPE = dict(hidden=256, intermediate=1024, layers=3, heads=8, kv_heads=2, vocab=4096)


def saved_per_token(method: str) -> float:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig
    from trl.trainer.utils import add_fused_lm_head

    cfg = LlamaConfig(vocab_size=SHAPE["vocab"], hidden_size=SHAPE["hidden"], intermediate_size=SHAPE["intermediate"],
                      num_hidden_layers=SHAPE["layers"], num_attention_heads=SHAPE["heads"],
                      num_key_value_heads=SHAPE["kv_heads"], tie_word_embeddings=True)
    torch.manual_seed(0)
    if method == "qlora":
        import tempfile

        folder = tempfile.mkdtemp()
        AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).save_pretrained(folder)
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16, quantization_config=quant)
    else:
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.config.use_cache = False
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    if method != "full":
        for p in model.parameters():
            p.requires_grad = False
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
        model.enable_input_require_grads()
    model.train()

    def saved(tokens: int) -> int:
        ids = torch.randint(0, SHAPE["vocab"], (1, tokens))
        seen: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            seen[t.data_ptr()] = t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
            model(input_ids=ids, labels=ids, fused_lm_head=True)
        return sum(seen.values())

    return (saved(512) - saved(256)) / 256  # per token: what is fixed (the weights) cancels


def main() -> None:
    out = {"full": saved_per_token("full"), "lora": saved_per_token("lora")}
    # PEFT's 4-bit layer skips the fp32 cast when CUDA autocast is on; make the CPU take that path.
    torch.is_autocast_enabled = lambda *a: True
    out["qlora"] = saved_per_token("qlora")
    print(json.dumps({"shape": SHAPE, "saved_per_token": out}))


if __name__ == "__main__":
    main()
