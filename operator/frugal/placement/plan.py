"""Placement of a whole fleet: GPU sizing, reservation assignment and capacity split.

Computed for all endpoints at once because reservation pools are shared; each endpoint then
takes its own entry. Pure: the same fleet and settings always give the same plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from frugal.api.base import CapacityType
from frugal.api.endpoint import InferenceEndpointSpec
from frugal.placement.reservations import Grant, ReservationDemand, assign_reservations
from frugal.placement.sizing import GpuFit, fit_gpu
from frugal.placement.split import Split, split_replicas
from frugal.settings import Settings


@dataclass(frozen=True)
class EndpointWish:
    """What the placement needs to know of one endpoint."""

    key: str
    spec: InferenceEndpointSpec
    replicas: int
    """Replicas wanted now (the autoscaler's decision, or the starting count)."""
    spot_share_limit: float | None = None


@dataclass(frozen=True)
class EndpointPlan:
    key: str
    replicas: int
    fit: GpuFit
    split: Split
    reservation: Grant | None
    code: str = "Placed"
    """Reason for the Placed condition: Placed, or what went wrong."""
    message: str = ""

    @property
    def placed(self) -> bool:
        """Every wanted replica has a capacity type and nothing is misconfigured."""
        return self.code in ("Placed", "ReservationFull")


def initial_replicas(spec: InferenceEndpointSpec) -> int:
    """Replicas to start with: at least one, so a new endpoint proves it can serve."""
    return min(max(spec.scaling.min_replicas, 1), spec.scaling.max_replicas)


def plan_fleet(wishes: Sequence[EndpointWish], settings: Settings) -> dict[str, EndpointPlan]:
    catalog = settings.catalog()
    fits: dict[str, GpuFit] = {}
    demands: list[ReservationDemand] = []
    for w in wishes:
        pool = settings.reservation(w.spec.capacity.reservation or "")
        fit = fit_gpu(
            w.spec,
            catalog,
            settings.engine.default_max_model_len,
            prefer=pool.gpu_type if pool else None,
        )
        fits[w.key] = fit
        if (
            fit.gpu
            and w.spec.capacity.reservation
            and (CapacityType.RESERVED in w.spec.capacity.preference)
        ):
            demands.append(
                ReservationDemand(
                    key=w.key,
                    pool=w.spec.capacity.reservation,
                    gpu_type=fit.gpu.name,
                    gpus_per_replica=fit.count,
                    replicas=w.replicas,
                    priority=w.spec.capacity.priority,
                    min_replicas=w.spec.scaling.min_replicas,
                )
            )
    grants = assign_reservations(demands, settings.reservations)
    plans = {}
    for w in wishes:
        fit = fits[w.key]
        grant = grants.get(w.key)
        if not fit.fits:
            plans[w.key] = EndpointPlan(
                w.key, w.replicas, fit, Split(), grant, fit.code, fit.reason
            )
            continue
        split = split_replicas(
            w.replicas, w.spec.capacity, grant.replicas if grant else 0, w.spot_share_limit
        )
        code, message = _verdict(w, fit, split, grant)
        plans[w.key] = EndpointPlan(w.key, w.replicas, fit, split, grant, code, message)
    return plans


def _verdict(w: EndpointWish, fit: GpuFit, split: Split, grant: Grant | None) -> tuple[str, str]:
    """The Placed condition's reason and message."""
    parts = [f"{fit.gpu.name}×{fit.count} per replica" if fit.gpu else ""]
    parts.append(f"{split.reserved} reserved, {split.spot} spot, {split.on_demand} on-demand")
    if grant and grant.code in ("UnknownReservation", "ReservationMismatch"):
        return grant.code, f"{grant.reason}; placed without it: {parts[1]}"
    if split.unplaced:
        why = grant.reason if grant else "no reservation"
        prefs = ", ".join(c.value for c in w.spec.capacity.preference)
        return "CapacityExhausted", (
            f"{split.unplaced} of {w.replicas} replicas have no capacity type that may take "
            f"them (preference: {prefs}; {why})"
        )
    if grant and grant.code == "ReservationFull":
        return "ReservationFull", f"{grant.reason}; {parts[1]}"
    return "Placed", "; ".join(parts)
