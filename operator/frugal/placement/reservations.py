"""Assign reserved GPUs to endpoints: a bin-packing over shared pools that never over-commits.

Reserved capacity is prepaid, so every GPU left idle is wasted money, but a pool cannot give
more GPUs than it has. Endpoints are served highest ``capacity.priority`` first, then the
steadiest (highest ``minReplicas``: load that is always there), then by name so that every
operator replica and every reconcile computes the same answer. Grants are whole replicas.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from frugal.settings import ReservationPool


@dataclass(frozen=True)
class ReservationDemand:
    """One endpoint's wish for reserved replicas in one pool."""

    key: str
    """namespace/name of the endpoint."""
    pool: str
    gpu_type: str
    gpus_per_replica: int
    replicas: int
    priority: int = 0
    min_replicas: int = 0


@dataclass(frozen=True)
class Grant:
    replicas: int
    reason: str
    code: str = "Granted"
    """Granted, ReservationFull, UnknownReservation or ReservationMismatch."""


def assign_reservations(
    demands: Iterable[ReservationDemand], pools: Iterable[ReservationPool]
) -> dict[str, Grant]:
    """endpoint key → reserved replicas granted, with the reason."""
    free = {p.name: p.gpus for p in pools}
    gpu_of = {p.name: p.gpu_type for p in pools}
    grants: dict[str, Grant] = {}
    ordered = sorted(demands, key=lambda d: (-d.priority, -d.min_replicas, d.key))
    for d in ordered:
        if d.pool not in free:
            grants[d.key] = Grant(
                0, f"reservation pool {d.pool!r} is not configured", "UnknownReservation"
            )
            continue
        if gpu_of[d.pool] != d.gpu_type:
            grants[d.key] = Grant(
                0,
                f"reservation pool {d.pool!r} holds {gpu_of[d.pool]}, not {d.gpu_type}",
                "ReservationMismatch",
            )
            continue
        fit = free[d.pool] // d.gpus_per_replica if d.gpus_per_replica > 0 else 0
        take = min(d.replicas, fit)
        free[d.pool] -= take * d.gpus_per_replica
        short = d.replicas - take
        reason = f"{take} of {d.replicas} replicas on reservation {d.pool}"
        if short:
            reason += f" ({free[d.pool]} GPUs left there)"
        grants[d.key] = Grant(take, reason, "ReservationFull" if short else "Granted")
    return grants
