"""The kube-scheduler profile frugal recommends for GPU fleets: pack GPUs, most-used node first.

Node affinity (render/affinity.py) keeps a replica on the smallest node class that holds it,
but among nodes of one class it cannot tell a half-used node from an empty one: the stock
scheduler then spreads (free CPU and memory, and each Deployment's own topology spread), and
the overflow of one-GPU replicas breaks up every multi-GPU node. This profile scores nodes by
the share of their GPUs in use after placement (``NodeResourcesFit`` with ``MostAllocated``),
which is best fit: an exact fit scores 100, a node left with more idle GPUs scores less.

- Only ``nvidia.com/gpu`` is scored. The scheduler skips an extended resource a pod does not
  request (``calculateNodeAllocatableRequest`` in ``noderesources``), so pods without GPUs get
  the same score on every node and keep the rest of the default profile; only the CPU and
  memory ``LeastAllocated`` term is gone.
- The plugin's weight is raised from 1 to ``FIT_WEIGHT``: one GPU of difference on an 8-GPU
  node is 12.5 points, and ×25 that outweighs the Deployment's own hostname spread
  (``PodTopologySpread``, at most 200) plus ``NodeResourcesBalancedAllocation`` (at most 100).

It is a scheduler configuration, not a pod field: platform teams who run their control plane
(kubeadm, k3s, RKE2, the KWOK testbed) set it in the default profile. Managed control planes
(EKS, GKE, AKS) take no scheduler configuration; there it runs as a second scheduler, named by
the ``engine.schedulerName`` setting, which engine pods then carry as ``schedulerName``.
"""

from __future__ import annotations

from typing import Any

GPU_RESOURCE = "nvidia.com/gpu"
FIT_WEIGHT = 25
SCHEDULER_API = "kubescheduler.config.k8s.io/v1"


def gpu_bin_packing_profile(scheduler_name: str = "default-scheduler") -> dict[str, Any]:
    """One ``KubeSchedulerConfiguration`` profile: the defaults, with GPUs bin-packed."""
    return {
        "schedulerName": scheduler_name,
        "plugins": {"score": {"enabled": [{"name": "NodeResourcesFit", "weight": FIT_WEIGHT}]}},
        "pluginConfig": [
            {
                "name": "NodeResourcesFit",
                "args": {
                    "scoringStrategy": {
                        "type": "MostAllocated",
                        "resources": [{"name": GPU_RESOURCE, "weight": 1}],
                    }
                },
            }
        ],
    }


def scheduler_configuration(*profiles: dict[str, Any]) -> dict[str, Any]:
    """A whole ``KubeSchedulerConfiguration`` with these profiles (the file ``--config`` reads)."""
    return {
        "apiVersion": SCHEDULER_API,
        "kind": "KubeSchedulerConfiguration",
        "profiles": [*profiles],
    }
