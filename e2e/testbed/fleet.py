"""A simulated GPU fleet: a KWOK cluster with fake, Karpenter-labelled GPU nodes.

``kwokctl`` (binary runtime, no containers) runs etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok-controller from the binaries ``build.sh`` built, so the real scheduler
places pods on Node objects that kwok-controller keeps Ready and whose pods it marks Running and
Ready without running anything. Every path kwokctl would download from is replaced by a local
binary and everything else it could fetch (Prometheus, Jaeger, metrics-server, ...) stays off,
so nothing touches the network. All state lives under the workdir given to ``Fleet``; its
``fleet.json`` lets another process (``fleet_down``) stop what ``up`` started.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from testbed.controlplane import REPO, TestbedError, bin_dir, ensure_built, free_port

# build.sh answers in a few ms, but kubectl runs in polling loops.
_bin_dir = functools.cache(bin_dir)

CapacityType = Literal["reserved", "spot", "on-demand"]
# What happens to the pods of a reclaimed pool (see Fleet.delete_pool).
PodFate = Literal["delete", "evict", "orphan"]

# Labels the fleet itself puts on every node, so pools can be found again.
POOL_LABEL = "frugal.dev/fleet-pool"
GPU_TYPE_LABEL = "frugal.dev/gpu-type"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "true", "effect": "NoSchedule"}
# What Karpenter puts on a node it is about to take away.
DISRUPTED_TAINT = "karpenter.sh/disrupted:NoSchedule"


@dataclass(frozen=True)
class InstanceType:
    """An EC2 GPU shape, so node labels and allocatable look like what Karpenter launches."""

    gpu_type: str  # frugal's catalog name (frugal.dev/gpu-type)
    gpu_name: str  # karpenter.k8s.aws/instance-gpu-name
    gpus: int
    cpus: int
    memory: str


INSTANCE_TYPES: dict[str, InstanceType] = {
    "g4dn.xlarge": InstanceType("t4", "t4", 1, 4, "16Gi"),
    "g4dn.12xlarge": InstanceType("t4", "t4", 4, 48, "192Gi"),
    "g5.xlarge": InstanceType("a10g", "a10g", 1, 4, "16Gi"),
    "g5.2xlarge": InstanceType("a10g", "a10g", 1, 8, "32Gi"),
    "g5.12xlarge": InstanceType("a10g", "a10g", 4, 48, "192Gi"),
    "g6.xlarge": InstanceType("l4", "l4", 1, 4, "16Gi"),
    "g6.2xlarge": InstanceType("l4", "l4", 1, 8, "32Gi"),
    "g6.12xlarge": InstanceType("l4", "l4", 4, 48, "192Gi"),
    "g6.48xlarge": InstanceType("l4", "l4", 8, 192, "768Gi"),
    "g6e.xlarge": InstanceType("l40s", "l40s", 1, 4, "32Gi"),
    "g6e.2xlarge": InstanceType("l40s", "l40s", 1, 8, "64Gi"),
    "g6e.12xlarge": InstanceType("l40s", "l40s", 4, 48, "384Gi"),
    "g6e.48xlarge": InstanceType("l40s", "l40s", 8, 192, "1536Gi"),
    "p4de.24xlarge": InstanceType("a100-80gb", "a100", 8, 96, "1152Gi"),
    "p5.48xlarge": InstanceType("h100", "h100", 8, 192, "2048Gi"),
}
# The smallest shape per GPU, as in frugal's catalog (catalog/gpus.py).
DEFAULT_INSTANCE_TYPES = {"l4": "g6.xlarge", "l40s": "g6e.xlarge"}

COMPONENTS = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok-controller",
]


@dataclass(frozen=True)
class NodePool:
    """``count`` identical fake GPU nodes.

    A Karpenter NodePool can offer several instance types; here each (pool, GPU type) pair is
    one entry, and entries may share ``name`` (``delete_pool(name)`` removes all of them).
    """

    name: str
    capacity_type: CapacityType
    gpu_type: str
    gpus_per_node: int
    count: int
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)
    cpu: str = "8"
    memory: str = "32Gi"


def karpenter_pool(
    name: str, capacity_type: CapacityType, instance_type: str, count: int
) -> NodePool:
    """``count`` nodes of one EC2 GPU shape, labelled and tainted as Karpenter's would be."""
    shape = INSTANCE_TYPES[instance_type]
    family, size = instance_type.split(".")
    labels = {
        "karpenter.sh/capacity-type": capacity_type,
        "karpenter.sh/nodepool": name,
        "karpenter.sh/registered": "true",
        "karpenter.sh/initialized": "true",
        "node.kubernetes.io/instance-type": instance_type,
        "karpenter.k8s.aws/instance-family": family,
        "karpenter.k8s.aws/instance-size": size,
        "karpenter.k8s.aws/instance-gpu-manufacturer": "nvidia",
        "karpenter.k8s.aws/instance-gpu-name": shape.gpu_name,
        "karpenter.k8s.aws/instance-gpu-count": str(shape.gpus),
        # GPU feature discovery's labels (the NVIDIA GPU operator runs it on every GPU node).
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.count": str(shape.gpus),
        GPU_TYPE_LABEL: shape.gpu_type,
    }
    return NodePool(
        name=name,
        capacity_type=capacity_type,
        gpu_type=shape.gpu_type,
        gpus_per_node=shape.gpus,
        count=count,
        labels=labels,
        taints=[dict(GPU_TAINT)],
        cpu=str(shape.cpus),
        memory=shape.memory,
    )


def karpenter_pools(
    *,
    reserved_l4: int = 2,
    spot_l4: int = 4,
    spot_l40s: int = 2,
    on_demand_l4: int = 4,
    on_demand_l40s: int = 2,
    instance_types: Mapping[str, str] = DEFAULT_INSTANCE_TYPES,
    reserved_pool: str = "reserved",
) -> list[NodePool]:
    """A reserved, a spot and an on-demand Karpenter NodePool of L4 and L40S nodes.

    Spot and on-demand pools are named after their capacity type. frugal's Karpenter profile
    selects reserved nodes by ``karpenter.sh/nodepool`` = the reservation's name, so
    ``reserved_pool`` should match a reservation in the operator's settings. Pools with a count
    of 0 are left out.
    """
    shape: list[tuple[str, CapacityType, str, int]] = [
        (reserved_pool, "reserved", "l4", reserved_l4),
        ("spot", "spot", "l4", spot_l4),
        ("spot", "spot", "l40s", spot_l40s),
        ("on-demand", "on-demand", "l4", on_demand_l4),
        ("on-demand", "on-demand", "l40s", on_demand_l40s),
    ]
    return [
        karpenter_pool(name, capacity_type, instance_types[gpu_type], count)
        for name, capacity_type, gpu_type, count in shape
        if count > 0
    ]


def node_manifest(pool: NodePool, name: str) -> dict[str, Any]:
    """One fake Node; kwok-controller (``--manage-all-nodes``) takes it over once it exists."""
    resources = {
        "cpu": pool.cpu,
        "memory": pool.memory,
        "pods": "110",
        GPU_RESOURCE: str(pool.gpus_per_node),
    }
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        GPU_TYPE_LABEL: pool.gpu_type,
        **pool.labels,
        POOL_LABEL: pool.name,
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
        },
        "spec": {"taints": [dict(t) for t in pool.taints]},
        # Creating a Node keeps its status (that is how a kubelet registers), so capacity and
        # allocatable are set here once; kwok adds nodeInfo, conditions and heartbeats.
        "status": {"capacity": resources, "allocatable": dict(resources)},
    }


@dataclass
class FleetState:
    """What ``up`` created, so that ``down`` (maybe another process) can remove it."""

    name: str
    workdir: str
    kwok_workdir: str
    cluster_dir: str
    kubeconfig: str
    server: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    # The node batches now registered (add_nodes appends, delete_pool removes).
    pools: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> FleetState | None:
        return cls(**json.loads(path.read_text())) if path.exists() else None

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))


class Fleet:
    """A kwokctl cluster (binary runtime) plus fake GPU node pools, all under ``workdir``."""

    def __init__(self, workdir: Path, name: str | None = None) -> None:
        self.workdir = workdir.resolve()
        self.state_file = self.workdir / "fleet.json"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.config_file = self.workdir / "kwokctl.yaml"
        # KWOK_WORKDIR: kwokctl keeps clusters/<name>/ (pids, logs, pki, etcd data) in here.
        self.kwok_workdir = self.workdir / "kwok"
        self.logs = self.workdir / "logs"
        # One fleet per workdir: the name of one already recorded there wins, which is also
        # how a second process (fleet_down) finds the cluster the first one created.
        state = FleetState.load(self.state_file)
        self.name = state.name if state else (name or f"fleet-{secrets.token_hex(4)}")
        self.cluster_dir = self.kwok_workdir / "clusters" / self.name

    # --- lifecycle -----------------------------------------------------------------------

    def up(
        self,
        pools: list[NodePool],
        crds: Path | None = REPO / "crds",
        timeout: float = 120.0,
        scheduler_config: Mapping[str, Any] | None = None,
    ) -> None:
        """Create the cluster, register the pools' nodes and install the CRDs.

        ``scheduler_config`` is a ``KubeSchedulerConfiguration`` for kube-scheduler (its
        profiles, e.g. frugal's GPU bin-packing one); without it the scheduler runs its
        defaults. A fleet that is already running is left as it is.
        """
        existing = FleetState.load(self.state_file)
        if existing and existing.pids and all(_running(p) for p in existing.pids.values()):
            return
        self.down()
        ensure_built("kubernetes", "etcd", "kwok")
        self.workdir.mkdir(parents=True, exist_ok=True)
        state = FleetState(
            name=self.name,
            workdir=str(self.workdir),
            kwok_workdir=str(self.kwok_workdir),
            cluster_dir=str(self.cluster_dir),
            kubeconfig=str(self.kubeconfig),
        )
        # Saved before anything starts, so that down() can clean up a half-finished up().
        state.save(self.state_file)
        try:
            self._write_config(scheduler_config)
            self._kwokctl("create", "cluster", "--kubeconfig", "", timeout=timeout)
            state.pids = self._pid_files()
            state.save(self.state_file)
            shutil.copyfile(self.cluster_dir / "kubeconfig.yaml", self.kubeconfig)
            state.server = self._server()
            state.save(self.state_file)
            self._wait_ready(timeout)
            for pool in pools:
                self.add_nodes(pool, timeout=timeout)
            if crds is not None:
                self.apply_crds(crds)
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """Delete the cluster and stop every process it ran (safe when nothing runs).

        The components' logs are kept in ``workdir/logs`` for post-mortems.
        """
        state = FleetState.load(self.state_file)
        if state is None:
            return
        pids = {**state.pids, **self._pid_files()}
        if (self.cluster_dir / "logs").is_dir():
            shutil.copytree(self.cluster_dir / "logs", self.logs, dirs_exist_ok=True)
        if (self.cluster_dir / "kwok.yaml").exists():
            # The kubeconfig argument must not be empty here; the file is never created.
            unused = str(self.workdir / "unused-kubeconfig")
            self._kwokctl("delete", "cluster", "--kubeconfig", unused, check=False, timeout=60)
        # kwokctl SIGKILLs what its pid files name; stop anything it missed (a failed create,
        # a deleted pid file), but only processes that are recognisably this cluster's.
        for pid in pids.values():
            if _running(pid) and str(self.cluster_dir) in _cmdline(pid):
                _terminate(pid)
        shutil.rmtree(self.kwok_workdir, ignore_errors=True)
        self.kubeconfig.unlink(missing_ok=True)
        self.state_file.unlink(missing_ok=True)

    # --- pools ---------------------------------------------------------------------------

    def add_nodes(self, pool: NodePool, timeout: float = 120.0) -> list[str]:
        """Register ``pool.count`` more nodes of ``pool`` and wait until kwok reports them Ready.

        Names carry a random suffix (like Karpenter's NodeClaims) so a pool can grow again
        after it was reclaimed.
        """
        names = [f"{pool.name}-{pool.gpu_type}-{secrets.token_hex(3)}" for _ in range(pool.count)]
        items = [node_manifest(pool, n) for n in names]
        nodes = {"apiVersion": "v1", "kind": "List", "items": items}
        self._kubectl_ok("create", "-f", "-", input=json.dumps(nodes))
        self._wait_nodes_ready(names, timeout)
        state = FleetState.load(self.state_file)
        if state is not None:
            state.pools.append(asdict(pool))
            state.save(self.state_file)
        return names

    def delete_pool(
        self,
        name: str,
        gpu_type: str | None = None,
        pods: PodFate = "delete",
        timeout: float = 120.0,
    ) -> list[str]:
        """Take a pool's nodes away, as a spot reclamation does; returns the node names.

        The nodes are first tainted ``karpenter.sh/disrupted`` and cordoned, as Karpenter does
        on an interruption notice, then their pods go according to ``pods``:

        - ``"delete"``: deleted, as the reclaimed instance kills them whatever PDBs say; the
          replacements are created at once.
        - ``"evict"``: evicted through the Eviction API, honouring PodDisruptionBudgets, for up
          to half of ``timeout``; the nodes go anyway after that, as the instance would.
          Pods in a terminating namespace cannot be evicted, only waited for.
        - ``"orphan"``: left alone. Only the Node objects go and the pods linger until the pod
          garbage collector removes them, 40-60 s later: kube-controller-manager waits a fixed
          40 s quarantine and looks every 20 s, and neither is a flag.
        """
        selector = f"{POOL_LABEL}={name}" + (f",{GPU_TYPE_LABEL}={gpu_type}" if gpu_type else "")
        nodes = self._node_names(selector)
        if not nodes:
            return []
        if pods != "orphan":
            self._kubectl_ok("taint", "nodes", "-l", selector, DISRUPTED_TAINT, "--overwrite")
            drain = ["drain", "-l", selector, "--ignore-daemonsets", "--delete-emptydir-data"]
            drain += ["--force", f"--timeout={int(timeout / 2)}s"]
            if pods == "delete":
                self._kubectl_ok(*drain, "--disable-eviction")
            else:
                self.kubectl(*drain)  # a drain blocked by a PDB does not stop the reclamation
        self._kubectl_ok("delete", "nodes", "-l", selector, f"--timeout={int(timeout)}s")
        deadline = time.monotonic() + timeout
        while self._node_names(selector):
            if time.monotonic() > deadline:
                raise TestbedError(f"nodes of pool {name} still exist after {timeout:.0f}s")
            time.sleep(0.5)
        state = FleetState.load(self.state_file)
        if state is not None:
            state.pools = [
                p for p in state.pools if p["name"] != name or gpu_type not in (None, p["gpu_type"])
            ]
            state.save(self.state_file)
        return nodes

    # --- helpers -------------------------------------------------------------------------

    def kubectl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the version-matched kubectl against this fleet."""
        cmd = [str(_bin_dir("kubernetes") / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        return subprocess.run(cmd, capture_output=True, text=True, input=input, check=False)

    def apply_crds(self, crds: Path) -> None:
        """Install the CRDs and wait until API discovery serves the frugal.dev kinds."""
        self._kubectl_ok("apply", "--server-side", "--force-conflicts", "-f", str(crds))
        self._kubectl_ok("wait", "--for=condition=Established", "--timeout=60s", "-f", str(crds))
        # Established comes before discovery serves the kinds (see ControlPlane.apply_crds).
        wanted = {"inferenceendpoints", "routingpolicies", "cachepolicies"}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = self.kubectl("api-resources", "--api-group=frugal.dev", "-o", "name")
            if wanted <= {line.split(".")[0] for line in out.stdout.split()}:
                return
            time.sleep(0.5)
        raise TestbedError("frugal.dev kinds never appeared in API discovery")

    def memory(self) -> dict[str, int]:
        """Resident memory (bytes) of each running component, for reports."""
        state = FleetState.load(self.state_file)
        return {n: process_rss(p) for n, p in (state.pids.items() if state else []) if _running(p)}

    def _kubectl_ok(self, *args: str, input: str | None = None) -> str:
        out = self.kubectl(*args, input=input)
        if out.returncode:
            raise TestbedError(f"kubectl {' '.join(args[:3])} failed: {out.stderr.strip()}")
        return out.stdout

    def _node_names(self, selector: str) -> list[str]:
        out = self._kubectl_ok("get", "nodes", "-l", selector, "-o", "name")
        return [line.removeprefix("node/") for line in out.split()]

    def _kwokctl(
        self, *args: str, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KWOK_")}
        env["KWOK_WORKDIR"] = str(self.kwok_workdir)
        # Every binary is local; should kwokctl still try a download, fail at once instead of
        # hanging on an unreachable host. Loopback stays direct for the components it starts.
        env |= {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
        env["NO_PROXY"] = "127.0.0.1,localhost,::1"
        kwokctl = str(_bin_dir("kwok") / "kwokctl")
        cmd = [kwokctl, "--config", str(self.config_file), "--name", self.name, *args]
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / "kwokctl.log").open("a") as log:
            out = subprocess.run(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout, check=False
            )
        if check and out.returncode:
            raise TestbedError(f"kwokctl {' '.join(args[:2])} failed; see {self.logs}/kwokctl.log")
        return out

    def _write_config(self, scheduler_config: Mapping[str, Any] | None = None) -> None:
        """A KwokctlConfiguration naming every binary and port, so kwokctl picks nothing itself.

        kwokctl would choose ports counting down from 32767 and only avoid those of clusters in
        the same KWOK_WORKDIR; ports the kernel hands out cannot collide with other fleets.
        A scheduler configuration goes to its own file, which kwokctl copies into the cluster
        (adding the kubeconfig) and passes to kube-scheduler as ``--config``.
        """
        kube, etcd, kwok = _bin_dir("kubernetes"), _bin_dir("etcd"), _bin_dir("kwok")
        options = {
            "runtime": "binary",
            "components": COMPONENTS,
            "bindAddress": "127.0.0.1",
            "kubeVersion": "v1.36.3",
            "etcdVersion": "3.6.16",
            "kubeApiserverBinary": str(kube / "kube-apiserver"),
            "kubeControllerManagerBinary": str(kube / "kube-controller-manager"),
            "kubeSchedulerBinary": str(kube / "kube-scheduler"),
            "kubectlBinary": str(kube / "kubectl"),
            "etcdBinary": str(etcd / "etcd"),
            "kwokControllerBinary": str(kwok / "kwok"),
            "kubeApiserverPort": free_port(),
            "etcdPort": free_port(),
            "etcdPeerPort": free_port(),
            "kubeControllerManagerPort": free_port(),
            "kubeSchedulerPort": free_port(),
            "kwokControllerPort": free_port(),
            "cacheDir": str(self.kwok_workdir / "cache"),
            "quietPull": True,
        }
        if scheduler_config is not None:
            path = self.workdir / "kube-scheduler.yaml"
            path.write_text(yaml.safe_dump(dict(scheduler_config), sort_keys=False))
            options["kubeSchedulerConfig"] = str(path)
        config = {
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
            "kind": "KwokctlConfiguration",
            "options": options,
            # A disposable store: fsync only slows every write down (as in the plain testbed).
            "componentsPatches": [
                {"name": "etcd", "extraArgs": [{"key": "unsafe-no-fsync", "value": "true"}]}
            ],
        }
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False))

    def _pid_files(self) -> dict[str, int]:
        pids = {}
        for path in (self.cluster_dir / "pids").glob("*.pid"):
            try:
                pids[path.stem] = int(path.read_text().strip())
            except (OSError, ValueError):
                continue
        return pids

    def _server(self) -> str:
        config = yaml.safe_load(self.kubeconfig.read_text())
        return config["clusters"][0]["cluster"]["server"]

    def _wait_ready(self, timeout: float) -> None:
        """Wait for /readyz and for controller-manager and scheduler to hold their leases.

        kwokctl's own ``--wait`` only checks /healthz and exits 0 even when that times out.
        The leases show the two are leading, and the default ServiceAccount that the
        controller-manager creates is what admission needs before any pod can be created.
        """
        deadline = time.monotonic() + timeout
        checks = [
            ("get", "--raw", "/readyz"),
            ("-n", "kube-system", "get", "lease", "kube-controller-manager", "kube-scheduler"),
            ("-n", "default", "get", "serviceaccount", "default"),
        ]
        for check in checks:
            while True:
                state = FleetState.load(self.state_file)
                dead = [n for n, p in (state.pids.items() if state else []) if not _running(p)]
                if dead:
                    raise TestbedError(f"{dead[0]} exited; see {self.cluster_dir / 'logs'}")
                out = self.kubectl(*check)
                if out.returncode == 0:
                    break
                if time.monotonic() > deadline:
                    raise TestbedError(
                        f"fleet not ready after {timeout:.0f}s: kubectl {' '.join(check)}: "
                        f"{out.stderr.strip()}; see {self.cluster_dir / 'logs'}"
                    )
                time.sleep(0.5)

    def _wait_nodes_ready(self, names: Iterable[str], timeout: float) -> None:
        waiting = set(names)
        deadline = time.monotonic() + timeout
        while waiting:
            items = json.loads(self._kubectl_ok("get", "nodes", "-o", "json"))["items"]
            for node in items:
                conditions = node.get("status", {}).get("conditions") or []
                if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                    waiting.discard(node["metadata"]["name"])
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise TestbedError(f"nodes not Ready after {timeout:.0f}s: {sorted(waiting)}")
            time.sleep(0.5)


def fleet_up(
    workdir: Path, pools: list[NodePool] | None = None, crds: Path | None = REPO / "crds"
) -> Fleet:
    """Start a fleet (the default Karpenter pools unless given) that outlives this process."""
    fleet = Fleet(workdir)
    fleet.up(karpenter_pools() if pools is None else pools, crds=crds)
    return fleet


def fleet_down(workdir: Path) -> None:
    """Stop the fleet whose state is in ``workdir`` (from any process; a no-op if none)."""
    Fleet(workdir).down()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _running(pid: int) -> bool:
    """Alive and not a zombie: kwokctl's children are re-parented to init, which reaps late."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def process_rss(pid: int, field: str = "VmRSS") -> int:
    """Resident set size in bytes (``VmRSS``; ``VmHWM`` for its peak so far), 0 once the
    process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _terminate(pid: int, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _running(pid):
                return
            time.sleep(0.1)


class ExternalFleet(Fleet):
    """The same fake GPU pools on a cluster someone else runs (kind with KWOK installed in it).

    Nodes are created and deleted exactly as on the local fleet; the cluster itself is neither
    started nor stopped. ``down`` removes only the nodes this object created.
    """

    def __init__(self, kubeconfig: Path, workdir: Path) -> None:
        super().__init__(workdir)
        self.kubeconfig = kubeconfig.resolve()
        self._created: list[str] = []

    def up(
        self,
        pools: list[NodePool],
        crds: Path | None = REPO / "crds",
        timeout: float = 120.0,
        scheduler_config: Mapping[str, Any] | None = None,
    ) -> None:
        if scheduler_config is not None:
            raise TestbedError("an external cluster's kube-scheduler is configured by its owner")
        ensure_built("kubernetes")
        self.workdir.mkdir(parents=True, exist_ok=True)
        FleetState(
            name=self.name,
            workdir=str(self.workdir),
            kwok_workdir="",
            cluster_dir="",
            kubeconfig=str(self.kubeconfig),
        ).save(self.state_file)
        for pool in pools:
            self._created += self.add_nodes(pool, timeout=timeout)
        if crds is not None:
            self.apply_crds(crds)

    def down(self) -> None:
        if self._created:
            self.kubectl("delete", "node", "--ignore-not-found", "--wait=false", *self._created)
        self._created = []
        self.state_file.unlink(missing_ok=True)


def fleet_for(workdir: Path) -> Fleet:
    """The fleet tests run on: FRUGAL_E2E_KUBECONFIG's cluster if set, else a local KWOK one."""
    external = os.environ.get("FRUGAL_E2E_KUBECONFIG")
    return ExternalFleet(Path(external), workdir) if external else Fleet(workdir)
