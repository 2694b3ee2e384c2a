"""What a run writes into its folder, planned before it starts: its checkpoints (the trained weights and the
optimizer's state, as many as train.save_total_limit keeps, and one more while the newest is written before
the oldest goes) and its final weights. Downloads go to the Hugging Face cache, not counted here."""

from __future__ import annotations

from dataclasses import dataclass

from studio.planning.estimate import optimizer_state_bytes
from studio.planning.plan import Plan
from studio.units import size_bytes


@dataclass(frozen=True)
class RunDisk:
    checkpoints: int        # on disk at once, at most
    checkpoint_bytes: int   # each
    final_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.checkpoints * self.checkpoint_bytes + self.final_bytes


def run_disk(plan: Plan) -> RunDisk | None:
    """None when the plan has no estimate (an unknown model)."""
    memory, setup = plan.memory, plan.setup
    if memory is None or setup is None:
        return None
    train = (plan.resolved or plan.profile).train
    width = 4 if setup.dtype == "fp32" else 2
    if setup.method == "full":  # the whole model, in the dtype it trains in
        weights = memory.total_params * width
        state = memory.total_params * optimizer_state_bytes(setup.optimizer, width)
    else:  # the adapters, which PEFT keeps in fp32
        weights = memory.trainable_params * 4
        state = memory.trainable_params * optimizer_state_bytes(setup.optimizer, 4)
    kept = train.save_total_limit + 1
    if train.max_steps > 0:
        kept = min(kept, max(1, train.max_steps // train.save_steps))  # a stop saves one even before save_steps
    return RunDisk(kept, int(weights + state), int(weights))


def disk_problem(plan: Plan, free_bytes: int | None, where: str) -> str | None:
    """What to say when the run would not fit in `free_bytes` (None when it fits or cannot be told)."""
    need = run_disk(plan)
    if need is None or free_bytes is None or need.total_bytes <= free_bytes:
        return None
    train = (plan.resolved or plan.profile).train
    return (f"this run writes about {size_bytes(need.total_bytes)} into {where} ({need.checkpoints} checkpoint"
            f"{'s' if need.checkpoints != 1 else ''} of {size_bytes(need.checkpoint_bytes)}, weights and optimizer "
            f"state, as train.save_total_limit = {train.save_total_limit} keeps them, and the final weights), and "
            f"that disk has {size_bytes(free_bytes)} free: free space, lower train.save_total_limit, or start it "
            "anyway")
