"""Plans from the product page: simultaneous connections and messages per month, per key owner."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    max_connections: int              # simultaneous connections per key owner
    messages_per_month: int | None    # None = unlimited


PLANS: dict[str, Plan] = {
    "free": Plan("free", 100, 500_000),
    "builder": Plan("builder", 5_000, 50_000_000),
    "scale": Plan("scale", 100_000, None),
}

