"""Pure spot-share policy: back off spot after repeated interruptions, return after quiet.

Spot is cheap until it is reclaimed under load. When spot replicas cannot run at all (their
nodes were reclaimed and no spot capacity is left to reschedule them), the limit drops to 0 at
once: every replica goes to on-demand. After ``threshold`` interruptions within ``window`` the
limit is halved; after ``quiet`` without any interruption it is doubled back step by step (up
to the spec's share). The limit feeds the placement split, which moves replicas between the
capacity types' Deployments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class SpotDecision:
    limit: float | None
    """Share limit to apply (None: the spec's share, no limit)."""
    action: str
    """LowerSpotShare, RestoreSpotShare or Hold."""
    reason: str


def decide_spot_share(
    interruptions: Sequence[datetime],
    current_limit: float | None,
    spec_share: float,
    now: datetime,
    *,
    threshold: int = 2,
    window: timedelta = timedelta(hours=1),
    quiet: timedelta = timedelta(hours=6),
    last_change: datetime | None = None,
    unavailable_for: timedelta | None = None,
) -> SpotDecision:
    """``unavailable_for``: how long the endpoint's spot replicas have been unable to run."""
    recent = [t for t in interruptions if now - t <= window]
    limit = spec_share if current_limit is None else min(current_limit, spec_share)
    if unavailable_for is not None and limit > 0:
        return SpotDecision(
            0.0,
            "LowerSpotShare",
            f"spot replicas could not run for {unavailable_for}: all replicas to on-demand",
        )
    changed_recently = last_change is not None and now - last_change < window
    if len(recent) >= threshold and limit > 0 and not changed_recently:
        lowered = round(limit / 2, 3) if limit > 0.1 else 0.0
        return SpotDecision(
            lowered,
            "LowerSpotShare",
            f"{len(recent)} spot interruptions in {window}: spot share {limit:g} → {lowered:g}",
        )
    last = max(interruptions, default=None)
    quiet_enough = last is None or now - last >= quiet
    settled = last_change is None or now - last_change >= quiet
    if current_limit is not None and current_limit < spec_share and quiet_enough and settled:
        raised = min(spec_share, max(current_limit * 2, 0.1))
        restored = raised >= spec_share
        return SpotDecision(
            None if restored else round(raised, 3),
            "RestoreSpotShare",
            f"no spot interruption for {quiet}: spot share {current_limit:g} → {raised:g}",
        )
    return SpotDecision(current_limit, "Hold", f"{len(recent)} recent spot interruptions")
