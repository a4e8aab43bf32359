"""Split an endpoint's replicas over reserved, spot and on-demand capacity.

Rules, in order:
1. the on-demand floor (``capacity.onDemandFloor``, at most the replica count) goes on
   on-demand first, so a spot reclamation never takes the endpoint to zero;
2. the remaining replicas fill the preference in order: reserved up to what the endpoint was
   granted in its pool, spot up to ``spot.maxShare`` of all replicas, on-demand without limit;
3. replicas nothing may take (no on-demand in the preference, reservation full, spot share
   reached) are reported as unplaced rather than silently dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from frugal.api.base import CapacityType
from frugal.api.endpoint import Capacity

DEFAULT_SPOT_SHARE_WITH_ON_DEMAND = 0.5


@dataclass(frozen=True)
class Split:
    reserved: int = 0
    spot: int = 0
    on_demand: int = 0
    unplaced: int = 0

    @property
    def placed(self) -> int:
        return self.reserved + self.spot + self.on_demand

    def count(self, capacity: CapacityType) -> int:
        return {
            CapacityType.RESERVED: self.reserved,
            CapacityType.SPOT: self.spot,
            CapacityType.ON_DEMAND: self.on_demand,
        }[capacity]


def spot_share(capacity: Capacity) -> float:
    """The effective spot share: the spec's, else 0.5 beside on-demand, 1 without it."""
    if CapacityType.SPOT not in capacity.preference:
        return 0.0
    if capacity.spot is not None and capacity.spot.max_share is not None:
        return capacity.spot.max_share
    if CapacityType.ON_DEMAND in capacity.preference:
        return DEFAULT_SPOT_SHARE_WITH_ON_DEMAND
    return 1.0


def split_replicas(
    replicas: int, capacity: Capacity, reserved_granted: int, spot_share_limit: float | None = None
) -> Split:
    """How many of ``replicas`` go on each capacity type.

    ``reserved_granted`` is what the reservation assignment gave this endpoint;
    ``spot_share_limit`` lets the spot policy lower the share after interruptions.
    """
    share = spot_share(capacity)
    if spot_share_limit is not None:
        share = min(share, spot_share_limit)
    counts = dict.fromkeys(CapacityType, 0)
    floor = 0
    if CapacityType.ON_DEMAND in capacity.preference:
        floor = min(capacity.on_demand_floor, replicas)
    counts[CapacityType.ON_DEMAND] = floor
    left = replicas - floor
    limits = {
        CapacityType.RESERVED: max(reserved_granted, 0),
        CapacityType.SPOT: math.floor(share * replicas + 1e-9),
        CapacityType.ON_DEMAND: left,
    }
    for ctype in capacity.preference:
        take = min(left, limits[ctype])
        counts[ctype] += take
        left -= take
    return Split(
        reserved=counts[CapacityType.RESERVED],
        spot=counts[CapacityType.SPOT],
        on_demand=counts[CapacityType.ON_DEMAND],
        unplaced=left,
    )
