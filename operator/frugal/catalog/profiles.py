"""Platform profiles: how each platform marks capacity types, GPU types and GPUs per node.

A profile turns "this replica goes on spot L4s" into node-selector labels and tolerations that
the scheduler enforces. Sources: Karpenter's well-known labels (karpenter.sh/capacity-type,
karpenter.k8s.aws/instance-gpu-name, -gpu-count), EKS managed node groups
(eks.amazonaws.com/capacityType), GKE (cloud.google.com/gke-spot, gke-accelerator,
gke-accelerator-count, reservation-name) and AKS (kubernetes.azure.com/scalesetpriority and its
spot taint). Where the platform itself does not label a node's GPU count (EKS managed node
groups, AKS, plain clusters), NVIDIA GPU feature discovery does (nvidia.com/gpu.count; it ships
with the NVIDIA GPU operator and the device plugin's Helm chart).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from frugal.api.base import CapacityType

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
GFD_GPU_COUNT = "nvidia.com/gpu.count"
"""GPU feature discovery's count of physical GPUs (not time-slicing replicas) on the node."""


class ProfileName(StrEnum):
    KARPENTER = "karpenter"
    EKS = "eks"
    GKE = "gke"
    AKS = "aks"
    PLAIN = "plain"


@dataclass(frozen=True)
class Profile:
    """Node labels and tolerations per capacity type, and the label that names the GPU."""

    name: ProfileName
    capacity_labels: dict[CapacityType, dict[str, str]]
    gpu_label: str
    gpu_values: dict[str, str] = field(default_factory=dict)
    """GPU catalog name → the platform's label value, where they differ."""
    capacity_tolerations: dict[CapacityType, list[dict[str, str]]] = field(default_factory=dict)
    reservation_label: str | None = None
    """Label whose value names the reservation (pool) a reserved node belongs to."""
    gpu_count_label: str | None = None
    """Label whose value is the number of physical GPUs on the node (see render/affinity.py)."""

    def node_selector(
        self, capacity: CapacityType, gpu_type: str, reservation: str | None = None
    ) -> dict[str, str]:
        labels = {**self.capacity_labels[capacity], self.gpu_label: self.gpu_value(gpu_type)}
        if capacity is CapacityType.RESERVED and reservation and self.reservation_label:
            labels[self.reservation_label] = reservation
        return labels

    def tolerations(self, capacity: CapacityType) -> list[dict[str, str]]:
        return [GPU_TOLERATION, *self.capacity_tolerations.get(capacity, [])]

    def gpu_value(self, gpu_type: str) -> str:
        return self.gpu_values.get(gpu_type, gpu_type)


_CT = CapacityType
PROFILES: dict[ProfileName, Profile] = {
    ProfileName.KARPENTER: Profile(
        ProfileName.KARPENTER,
        capacity_labels={
            _CT.RESERVED: {"karpenter.sh/capacity-type": "reserved"},
            _CT.SPOT: {"karpenter.sh/capacity-type": "spot"},
            _CT.ON_DEMAND: {"karpenter.sh/capacity-type": "on-demand"},
        },
        gpu_label="karpenter.k8s.aws/instance-gpu-name",
        gpu_values={"a100-80gb": "a100", "h100": "h100"},
        reservation_label="karpenter.sh/nodepool",
        gpu_count_label="karpenter.k8s.aws/instance-gpu-count",
    ),
    ProfileName.EKS: Profile(
        ProfileName.EKS,
        capacity_labels={
            _CT.RESERVED: {"eks.amazonaws.com/capacityType": "CAPACITY_BLOCK"},
            _CT.SPOT: {"eks.amazonaws.com/capacityType": "SPOT"},
            _CT.ON_DEMAND: {"eks.amazonaws.com/capacityType": "ON_DEMAND"},
        },
        gpu_label="frugal.dev/gpu-type",
        reservation_label="eks.amazonaws.com/nodegroup",
        gpu_count_label=GFD_GPU_COUNT,
    ),
    ProfileName.GKE: Profile(
        ProfileName.GKE,
        capacity_labels={
            _CT.RESERVED: {"frugal.dev/capacity-type": "reserved"},
            _CT.SPOT: {"cloud.google.com/gke-spot": "true"},
            _CT.ON_DEMAND: {"frugal.dev/capacity-type": "on-demand"},
        },
        gpu_label="cloud.google.com/gke-accelerator",
        gpu_values={
            "t4": "nvidia-tesla-t4",
            "l4": "nvidia-l4",
            "a100-80gb": "nvidia-a100-80gb",
            "h100": "nvidia-h100-80gb",
        },
        capacity_tolerations={
            _CT.SPOT: [
                {
                    "key": "cloud.google.com/gke-spot",
                    "operator": "Equal",
                    "value": "true",
                    "effect": "NoSchedule",
                }
            ]
        },
        reservation_label="cloud.google.com/reservation-name",
        gpu_count_label="cloud.google.com/gke-accelerator-count",
    ),
    ProfileName.AKS: Profile(
        ProfileName.AKS,
        capacity_labels={
            _CT.RESERVED: {"frugal.dev/capacity-type": "reserved"},
            _CT.SPOT: {"kubernetes.azure.com/scalesetpriority": "spot"},
            _CT.ON_DEMAND: {"frugal.dev/capacity-type": "on-demand"},
        },
        gpu_label="frugal.dev/gpu-type",
        capacity_tolerations={
            _CT.SPOT: [
                {
                    "key": "kubernetes.azure.com/scalesetpriority",
                    "operator": "Equal",
                    "value": "spot",
                    "effect": "NoSchedule",
                }
            ]
        },
        reservation_label="kubernetes.azure.com/agentpool",
        gpu_count_label=GFD_GPU_COUNT,
    ),
    ProfileName.PLAIN: Profile(
        ProfileName.PLAIN,
        capacity_labels={ct: {"frugal.dev/capacity-type": ct.value} for ct in CapacityType},
        gpu_label="frugal.dev/gpu-type",
        reservation_label="frugal.dev/reservation",
        gpu_count_label=GFD_GPU_COUNT,
    ),
}
