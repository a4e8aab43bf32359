"""Shared fixtures: a real API server for everything that crosses one.

By default a session-scoped etcd + kube-apiserver is started on loopback (built from Go modules
by e2e/testbed/build.sh and cached outside the repository). Set FRUGAL_TEST_KUBECONFIG to run
the same tests against another cluster (kind, a KWOK fleet) instead; the CRDs must be installed
there.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "manifests" / "examples"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:  # noqa: F821
    from testbed import ControlPlane, bin_dir
    from testbed.client import Cluster

    external = os.environ.get("FRUGAL_TEST_KUBECONFIG")
    if external:
        yield Cluster(Path(external))
        return
    plane = ControlPlane(tmp_path_factory.mktemp("testbed"))
    plane.up(crds=REPO / "crds")
    try:
        yield Cluster(plane.kubeconfig, kubectl_path=str(bin_dir("kubernetes") / "kubectl"))
    finally:
        plane.down()


@pytest.fixture
def namespace(cluster) -> str:
    """A fresh namespace per test, so tests never see each other's objects."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.ensure_namespace(name)
    return name
