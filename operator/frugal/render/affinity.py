"""GPU-count-aware node affinity: a replica goes on the smallest node that holds it.

The stock kube-scheduler scores nodes by free CPU and memory (``NodeResourcesFit`` with
``LeastAllocated``, which ignores GPUs) and spreads a Deployment's replicas over hosts, so it puts
one-GPU replicas on the *largest* GPU nodes first. On a fixed fleet that breaks up every
multi-GPU node, and a replica sharded over four GPUs never fits again. Two rules stop that:

- **Preferred**: size classes of the node's GPU count, ``[n, 2n)``, ``[2n, 4n)``, ``[4n, 8n)``
  for a replica of ``n`` GPUs, each worth a quarter of the one below (weights 100, 25, 6). The
  scheduler normalises the sum to 0-100 over the feasible nodes and doubles it (``NodeAffinity``
  weight 2), so the best class still open beats the next by at least 150 points: more than
  ``LeastAllocated`` can give (at most 100), and classes above ``8n`` are used only when nothing
  smaller has room. Karpenter treats the heaviest preferred term as a requirement and relaxes
  them heaviest first (``pkg/scheduling/requirements.go``, ``provisioning/scheduling/
  preferences.go``), so it launches the smallest sufficient instance first too.
- **Required**, for replicas of two or more GPUs: a node with at least ``n`` GPUs by the label,
  or without the label. The ``nvidia.com/gpu`` request already needs ``n`` allocatable devices,
  but time-slicing multiplies allocatable (GPU feature discovery keeps ``gpu.count`` physical),
  and tensor parallelism needs ``n`` real GPUs. ``DoesNotExist`` keeps clusters without the
  label schedulable.

Packing one-GPU replicas onto already used multi-GPU nodes, once the one-GPU nodes are full,
needs the node's *usage*, which no pod field can express: that is the scheduler's bin-packing
profile (``render/scheduler.py``, docs/node-pools.md).
"""

from __future__ import annotations

from typing import Any

CLASS_WEIGHTS = (100, 25, 6)
"""Preferred-term weight of the size classes [n, 2n), [2n, 4n), [4n, 8n)."""


def gpu_count_affinity(label: str, gpus: int) -> dict[str, Any]:
    """``nodeAffinity`` for a replica of ``gpus`` GPUs on nodes whose GPU count is ``label``."""
    preferred = [
        {
            "weight": weight,
            "preference": {
                "matchExpressions": [
                    {"key": label, "operator": "Gt", "values": [str(low - 1)]},
                    {"key": label, "operator": "Lt", "values": [str(2 * low)]},
                ]
            },
        }
        for weight, low in zip(CLASS_WEIGHTS, _class_bounds(gpus), strict=True)
    ]
    affinity: dict[str, Any] = {"preferredDuringSchedulingIgnoredDuringExecution": preferred}
    if gpus > 1:
        affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": label, "operator": "Gt", "values": [str(gpus - 1)]}]},
                {"matchExpressions": [{"key": label, "operator": "DoesNotExist"}]},
            ]
        }
    return affinity


def _class_bounds(gpus: int) -> list[int]:
    """Lower bounds of the size classes: n, 2n, 4n."""
    return [gpus * 2**k for k in range(len(CLASS_WEIGHTS))]
