"""The testbed: a real Kubernetes control plane built from Go modules, for tests and demos."""

from testbed.controlplane import ControlPlane, TestbedError, bin_dir, ensure_built

__all__ = ["ControlPlane", "TestbedError", "bin_dir", "ensure_built"]
