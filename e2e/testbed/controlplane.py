"""Start and stop a real etcd + kube-apiserver on loopback, built by ``build.sh``.

Used by ``make testbed-up`` / ``make testbed-down`` (through ``python -m testbed``) and by the
session fixture of the test suite. Processes run in their own session so that they outlive the
command that started them; their PIDs are kept in ``state.json`` beside the kubeconfig so that
``down`` stops exactly what ``up`` started.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from testbed.pki import Pki, create_pki

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BUILD = HERE / "build.sh"


class TestbedError(RuntimeError):
    """The control plane could not be built or started; the message says where to look."""


def bin_dir(component: str) -> Path:
    """Where build.sh keeps (or would keep) a component's binaries."""
    out = subprocess.run(
        ["bash", str(BUILD), "--print-bin-dir", component],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip())


def ensure_built(*components: str) -> None:
    """Build missing components (a no-op when the cache holds them)."""
    subprocess.run(["bash", str(BUILD), *components], check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class State:
    """What ``up`` started, so that ``down`` (maybe another process) can stop it."""

    workdir: str
    kubeconfig: str
    server: str
    pids: dict[str, int] = field(default_factory=dict)
    args: dict[str, list[str]] = field(default_factory=dict)
    """Each component's command line, so that a fault test can restart it as it was."""

    @classmethod
    def load(cls, path: Path) -> State | None:
        return cls(**json.loads(path.read_text())) if path.exists() else None

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))


class ControlPlane:
    """etcd and kube-apiserver with a real PKI and RBAC, on loopback ports."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir.resolve()
        self.state_file = self.workdir / "state.json"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.logs = self.workdir / "logs"

    # --- lifecycle -----------------------------------------------------------------------

    def up(self, crds: Path | None = REPO / "crds", timeout: float = 120.0) -> State:
        """Start etcd and kube-apiserver, write the kubeconfig, install the CRDs."""
        existing = State.load(self.state_file)
        if existing and all(alive(p) for p in existing.pids.values()):
            return existing
        self.down()
        ensure_built("kubernetes", "etcd")
        self.logs.mkdir(parents=True, exist_ok=True)
        pki = create_pki(self.workdir / "pki")
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        server = f"https://127.0.0.1:{api_port}"
        state = State(str(self.workdir), str(self.kubeconfig), server)
        try:
            state.args["etcd"] = self._etcd_args(etcd_port, peer_port)
            state.pids["etcd"] = self._spawn("etcd", state.args["etcd"])
            state.save(self.state_file)
            state.args["kube-apiserver"] = self._apiserver_args(pki, etcd_port, api_port)
            state.pids["kube-apiserver"] = self._spawn(
                "kube-apiserver", state.args["kube-apiserver"]
            )
            state.save(self.state_file)
            self._write_kubeconfig(pki, server)
            self._wait_ready(pki, server, timeout)
            # Garbage collection (ownerReferences), Deployments → ReplicaSets → Pods and the
            # default ServiceAccounts are the controller-manager's; without it a test could
            # not see deletion cascade.
            state.pids["kube-controller-manager"] = self._spawn(
                "kube-controller-manager", self._controller_manager_args(pki)
            )
            state.save(self.state_file)
            if crds is not None:
                self.apply_crds(crds)
        except BaseException:
            self.down()
            raise
        return state

    def down(self) -> None:
        """Stop whatever ``up`` started (safe to call when nothing runs)."""
        state = State.load(self.state_file)
        if state is None:
            return
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            pid = state.pids.get(name)
            if pid:
                stop_process(pid)
        self.state_file.unlink(missing_ok=True)

    def restart(self, *components: str, down_for: float = 0.0) -> None:
        """Stop ``components`` (e.g. kube-apiserver, etcd) and start them again as they were.

        For fault tests: clients see the API server go away and come back on the same address.
        """
        state = State.load(self.state_file)
        if state is None:
            raise TestbedError("the control plane is not running")
        for name in components:
            stop_process(state.pids[name])
        time.sleep(down_for)
        for name in reversed(components):
            state.pids[name] = self._spawn(name, state.args[name])
            state.save(self.state_file)
        pki = Pki(self.workdir / "pki")
        self._wait_ready(pki, state.server, 120)

    # --- helpers -------------------------------------------------------------------------

    def kubectl(self, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
        """Run the version-matched kubectl against this control plane."""
        cmd = [str(bin_dir("kubernetes") / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        return subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)

    def apply_crds(self, crds: Path) -> None:
        out = self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crds))
        if out.returncode:
            raise TestbedError(f"installing CRDs failed: {out.stderr}")
        out = self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(crds))
        if out.returncode:
            raise TestbedError(f"CRDs not established: {out.stderr}")
        # Established comes before discovery serves the kinds; clients (kubectl explain, get by
        # short name) only see them once discovery does.
        wanted = {"inferenceendpoints", "routingpolicies", "cachepolicies"}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = self.kubectl("api-resources", "-o", "name")
            if wanted <= {line.split(".")[0] for line in out.stdout.split()}:
                return
            time.sleep(0.5)
        raise TestbedError("frugal.dev kinds never appeared in API discovery")

    def _spawn(self, name: str, args: list[str]) -> int:
        binary = bin_dir("etcd" if name == "etcd" else "kubernetes") / name
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [str(binary), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        return proc.pid

    def _etcd_args(self, port: int, peer: int) -> list[str]:
        peer_url = f"http://127.0.0.1:{peer}"
        return [
            "--name=testbed",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{port}",
            f"--advertise-client-urls=http://127.0.0.1:{port}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=testbed={peer_url}",
            "--listen-metrics-urls=",
            # A disposable test store: durability buys nothing and fsync costs seconds.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]

    def _apiserver_args(self, pki: Pki, etcd_port: int, port: int) -> list[str]:
        return [
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--authorization-mode=RBAC",
            f"--cert-dir={self.workdir / 'pki'}",
            "--profiling=false",
            "--v=1",
        ]

    def _controller_manager_args(self, pki: Pki) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig}",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_cert}",
            "--use-service-account-credentials=false",
            "--leader-elect=false",
            "--secure-port=0",
            # Faster than the defaults, so deletions cascade promptly in tests.
            "--concurrent-gc-syncs=10",
            "--v=1",
        ]

    def _write_kubeconfig(self, pki: Pki, server: str) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "testbed",
                    "cluster": {"server": server, "certificate-authority": str(pki.ca_cert)},
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate": str(pki.admin_cert),
                        "client-key": str(pki.admin_key),
                    },
                }
            ],
            "contexts": [{"name": "testbed", "context": {"cluster": "testbed", "user": "admin"}}],
            "current-context": "testbed",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))

    def _wait_ready(self, pki: Pki, server: str, timeout: float) -> None:
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        ctx.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            state = State.load(self.state_file)
            dead = [n for n, p in (state.pids.items() if state else []) if not alive(p)]
            if dead:
                raise TestbedError(f"{dead[0]} exited; see {self.logs / (dead[0] + '.log')}")
            try:
                with urllib.request.urlopen(f"{server}/readyz", context=ctx, timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError as err:
                last = str(err)
            time.sleep(0.5)
        raise TestbedError(
            f"kube-apiserver not ready after {timeout:.0f}s ({last}); see {self.logs}"
        )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this process still "exists"; reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == 0


def stop_process(pid: int, grace: float = 10.0, group: bool = False) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds (to the process group with ``group``).

    A child of this process is reaped, so a zombie never looks alive.
    """
    kill = os.killpg if group else os.kill
    try:
        kill(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.1)
    try:
        kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while alive(pid):
        time.sleep(0.05)
