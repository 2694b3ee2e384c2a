"""A decision: what a profile left to studio (an `auto`), what was chosen and why.

The plan decides most of them from the profile, the machine and the estimate. Some can
only be decided once the trainer holds what they depend on (the rows' lengths, the real
model); the plan records those as PENDING with the value a run would start from, and the
trainer writes the decision it made back, typed, into its `start` record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

DECIDED, PENDING = "decided", "pending"


@dataclass(frozen=True)
class Decision:
    key: str            # a dotted profile key, e.g. "data.packing"
    value: Any
    reason: str
    state: str = DECIDED  # DECIDED, or PENDING: the trainer decides it from the data or the model

    @property
    def pending(self) -> bool:
        return self.state == PENDING

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Any) -> Decision | None:
        """A decision from plan.json or a `start` record; None for anything that is not one."""
        if not isinstance(raw, dict) or not isinstance(raw.get("key"), str) or not isinstance(raw.get("reason", ""), str):
            return None
        state = raw.get("state", DECIDED)
        return cls(raw["key"], raw.get("value"), raw.get("reason", ""), state if state in (DECIDED, PENDING) else DECIDED)
