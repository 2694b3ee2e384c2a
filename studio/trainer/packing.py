"""Is padding-free packing exact for this model? Checked on the real model before training with it.

TRL's packing concatenates rows into one sequence with position ids that restart at each
row; that is correct only when the attention implementation keeps the rows apart (a
block-diagonal mask, or varlen kernels). Some do not: then a row would attend to the one
before it and train on the wrong context. The check runs a few real rows one by one and
packed, exactly as TRL's collator builds the batch, and compares every token's log-prob.
"""

from __future__ import annotations

from typing import Any

import torch

TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 0.1, torch.float16: 0.05}  # nats per token
CHECK_ROWS, CHECK_TOKENS = 3, 48
TRAINING_ONLY = ("Linear4bit",)  # bitsandbytes' layers that must never see eval mode before training


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p(token t+1 | tokens <= t) for each position of one row."""
    return torch.log_softmax(logits[:-1].float(), dim=-1).gather(-1, ids[1:, None]).squeeze(-1)


def packing_difference(model: Any, rows: list[list[int]], pad_token_id: int) -> float:
    """The largest per-token log-prob difference between rows run alone and the same rows packed."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    device = next(model.parameters()).device
    rows = [r[:CHECK_TOKENS] for r in rows[:CHECK_ROWS] if len(r) >= 2]
    batch = DataCollatorForLanguageModeling(pad_token_id=pad_token_id, padding_free=True)(
        [{"input_ids": r} for r in rows])
    inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()
              if k not in ("labels", "seq_idx")}
    modes = {m: m.training for m in model.modules()}
    model.eval()  # no dropout: the two runs must be comparable...
    for m in model.modules():
        if type(m).__name__ in TRAINING_ONLY:  # ...but a 4-bit layer in eval mode on the CPU converts its
            m.train()                          # weights to an inference-only layout that cannot train again
    try:
        with torch.no_grad():
            packed = model(**inputs, use_cache=False).logits[0]
            worst, start = 0.0, 0
            for r in rows:
                ids = torch.tensor(r, device=device)
                alone = token_logprobs(model(input_ids=ids[None], use_cache=False).logits[0], ids)
                together = token_logprobs(packed[start:start + len(r)], ids)
                worst = max(worst, float((alone - together).abs().max()))
                start += len(r)
    finally:
        for m, training in modes.items():
            m.training = training
    return worst


def packing_is_exact(model: Any, rows: list[list[int]], pad_token_id: int) -> tuple[bool, str]:
    """(exact?, what was measured) for the model's attention path and dtype."""
    dtype = next(model.parameters()).dtype
    if dtype not in TOLERANCE:  # 4-bit storage: compare in the compute dtype's tolerance
        dtype = torch.bfloat16
    if len([r for r in rows if len(r) >= 2]) < 2:
        return False, "too few rows to check packing against"
    try:
        diff = packing_difference(model, rows, pad_token_id)
    except torch.OutOfMemoryError:
        raise
    except (ValueError, NotImplementedError, RuntimeError, TypeError) as e:
        # Linear attention, Mamba and short-conv mixers refuse packed rows without their kernels
        # (flash-linear-attention, causal-conv1d, mamba-ssm): then this model trains unpacked.
        return False, f"the model refuses packed rows here ({type(e).__name__}: {str(e).splitlines()[0][:300]}): training unpacked"
    attention = getattr(model.config, "_attn_implementation", "?")
    if diff <= TOLERANCE[dtype]:
        return True, f"packed rows stay apart with {attention} attention (log-probs within {diff:.1e} of unpacked)"
    return False, (f"{attention} attention mixes packed rows (log-probs differ by up to {diff:.2f} nats): "
                   "training unpacked")
