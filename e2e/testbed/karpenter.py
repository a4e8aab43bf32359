"""Karpenter's own CRDs on a test API server, fetched from its Go modules by karpenter-crds.sh.

The CRDs (karpenter.sh/v1 NodePool and NodeClaim, karpenter.k8s.aws/v1 EC2NodeClass, ...) come
from the pinned Karpenter release's Go modules into a version-keyed cache outside the
repository; nothing of them is committed. Installing them lets a test server-side apply
frugal's rendered NodePools and EC2NodeClasses against the real schemas, CEL rules included.
No Karpenter controller runs: the objects are stored and validated, never acted on.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Protocol

HERE = Path(__file__).resolve().parent
FETCH = HERE / "karpenter-crds.sh"
REQUIRED = (
    "nodepools.karpenter.sh",
    "nodeclaims.karpenter.sh",
    "ec2nodeclasses.karpenter.k8s.aws",
)


class _Kubectl(Protocol):
    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> str: ...


def crds_dir(*, fetch: bool = True) -> Path:
    """The folder of the pinned release's CRDs; fetched first when ``fetch`` and missing."""
    args = ["bash", str(FETCH)] + ([] if fetch else ["--print-dir"])
    out = subprocess.run(args, check=False, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"fetching Karpenter's CRDs failed: {out.stderr.strip()}")
    return Path(out.stdout.strip().splitlines()[-1])


def version() -> str:
    """The pinned Karpenter (AWS provider) version, e.g. v1.14.1."""
    return crds_dir(fetch=False).parent.name.removeprefix("karpenter-")


def install_crds(cluster: _Kubectl, folder: Path | None = None) -> list[str]:
    """Server-side apply every CRD of the folder and wait until each is Established."""
    folder = folder or crds_dir()
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise FileNotFoundError(f"no CRDs in {folder}")
    names = []
    for path in files:
        out = cluster.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=frugal-tests",
            "-f",
            str(path),
            "-o",
            "name",
        )
        names += [line.split("/", 1)[-1] for line in out.split() if line]
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        *(f"crd/{name}" for name in names),
    )
    missing = set(REQUIRED) - set(names)
    if missing:
        raise RuntimeError(f"the Karpenter CRDs in {folder} lack {sorted(missing)}")
    return names
