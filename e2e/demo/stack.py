"""Everything the demo runs, started and stopped as one: fleet, Prometheus, engines, frugal.

KWOK pods run no containers, so the vLLM engines are `frugal engine-sim` processes (one per
endpoint, standing in for its replicas), and the operator and the gateway run as local
processes against the simulated cluster. PIDs and addresses are kept in ``.demo/state.json`` so
that ``make demo-down`` (another process) stops exactly what ``make demo`` started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from frugal.render.scheduler import gpu_bin_packing_profile, scheduler_configuration
from testbed.controlplane import REPO, bin_dir, ensure_built, stop_process
from testbed.fleet import Fleet, fleet_down, karpenter_pool, karpenter_pools
from testbed.prom import Prometheus, free_port

RESERVATION = "support-l4"


@dataclass(frozen=True)
class Engine:
    """One engine simulator standing in for an endpoint's vLLM pods."""

    endpoint: str
    namespace: str
    quality: float
    tokens_per_second: float = 60
    ttft_seconds: float = 0.15


ENGINES = (
    Engine("support-small", "support", quality=0.96, tokens_per_second=90, ttft_seconds=0.08),
    Engine("support-medium", "support", quality=0.98, tokens_per_second=60, ttft_seconds=0.15),
    Engine("support-large", "support", quality=1.0, tokens_per_second=30, ttft_seconds=0.35),
    Engine("dev-assistant", "dev", quality=0.9, tokens_per_second=80, ttft_seconds=0.1),
)


@dataclass
class State:
    workdir: str
    kubeconfig: str = ""
    prometheus: str = ""
    gateway: str = ""
    operator_metrics: str = ""
    engines: dict[str, str] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> State | None:
        return cls(**json.loads(path.read_text())) if path.exists() else None

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))


def demo_pools() -> list:
    """A small reserved pool, spot and on-demand pools of two GPU types (Karpenter labels)."""
    pools = karpenter_pools(
        reserved_l4=2,
        spot_l4=4,
        spot_l40s=2,
        on_demand_l4=4,
        on_demand_l40s=2,
        instance_types={"l4": "g6.2xlarge", "l40s": "g6e.2xlarge"},
        reserved_pool=RESERVATION,
    )
    # Four-L4 nodes for the 70B tier (4 x L4, the cheapest fit), and T4s for the small dev model.
    # The fleet has no autoscaler: GPU-count-aware placement keeps the one-GPU replicas off the
    # four-GPU nodes, and the scheduler's bin-packing profile packs any overflow onto one.
    pools.append(karpenter_pool("on-demand", "on-demand", "g6.12xlarge", 2))
    pools.append(karpenter_pool("on-demand", "on-demand", "g4dn.xlarge", 2))
    pools.append(karpenter_pool("spot", "spot", "g4dn.xlarge", 2))
    return pools


class Stack:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir.resolve()
        self.state_file = self.workdir / "state.json"
        self.logs = self.workdir / "logs"
        self.fleet = Fleet(self.workdir / "fleet")
        self.prom = Prometheus(self.workdir / "prometheus")
        self.state = State(str(self.workdir))

    # --- up ----------------------------------------------------------------------------------

    def up(self, say=print) -> State:
        self.down(quiet=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        say("building or reusing the testbed binaries (first time: ~10 minutes)")
        ensure_built("kubernetes", "etcd", "kwok", "helm")
        say("starting the simulated fleet: kube-apiserver, etcd, scheduler, KWOK GPU nodes")
        self.fleet.up(
            demo_pools(),
            scheduler_config=scheduler_configuration(gpu_bin_packing_profile()),
        )
        self.state.kubeconfig = str(self.fleet.kubeconfig)
        self.state.save(self.state_file)
        say("installing frugal with its Helm chart")
        self._helm_install()
        say("starting Prometheus and one engine simulator per endpoint")
        self.prom.start()
        self.state.prometheus = self.prom.url
        self.state.pids["prometheus"] = self.prom.proc.pid
        for engine in ENGINES:
            self._start_engine(engine)
        self.state.save(self.state_file)
        return self.state

    def _helm_install(self) -> None:
        chart = REPO / "charts" / "frugal"
        if not (chart / "Chart.yaml").exists():
            return
        helm = bin_dir("helm") / "helm"
        values = {"operator": {"replicas": 1}}
        (self.workdir / "helm-values.yaml").write_text(yaml.safe_dump(values))
        subprocess.run(
            [
                str(helm),
                "upgrade",
                "--install",
                "frugal",
                str(chart),
                "--namespace",
                "frugal-system",
                "--create-namespace",
                "--kubeconfig",
                str(self.fleet.kubeconfig),
                "-f",
                str(self.workdir / "helm-values.yaml"),
                "--wait=false",
            ],
            check=True,
            capture_output=True,
            text=True,
        )

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> int:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        self.state.pids[name] = proc.pid
        self.state.save(self.state_file)
        return proc.pid

    def _start_engine(self, engine: Engine) -> None:
        port = free_port()
        self._spawn(
            f"engine-{engine.endpoint}",
            [
                sys.executable,
                "-m",
                "frugal.enginesim",
                "--port",
                str(port),
                "--model",
                engine.endpoint,
                "--quality",
                str(engine.quality),
                "--tokens-per-second",
                str(engine.tokens_per_second),
                "--ttft-seconds",
                str(engine.ttft_seconds),
                "--answer-tokens",
                "40",
                "--seed",
                "1",
                "--max-num-seqs",
                "64",
            ],
        )
        url = f"http://127.0.0.1:{port}"
        self.state.engines[engine.endpoint] = url
        _wait_http(f"{url}/health")
        self.prom.add_target(
            f"127.0.0.1:{port}", endpoint=engine.endpoint, namespace=engine.namespace
        )

    def start_operator(self, settings: dict) -> None:
        path = self.workdir / "operator-settings.yaml"
        path.write_text(yaml.safe_dump(settings))
        port = free_port()
        self.state.operator_metrics = f"http://127.0.0.1:{port}"
        self._spawn(
            "operator",
            [
                sys.executable,
                "-m",
                "frugal.cli",
                "operator",
                "--standalone",
                "--settings",
                str(path),
                "--namespace",
                "support",
                "--namespace",
                "dev",
                "--log-format",
                "plain",
                "--metrics-port",
                str(port),
            ],
            env={"KUBECONFIG": self.state.kubeconfig},
        )
        self.prom.add_target(f"127.0.0.1:{port}", job="frugal-operator")

    def start_gateway(self, config: Path) -> str:
        port = free_port()
        self._spawn(
            "gateway",
            [
                sys.executable,
                "-m",
                "frugal.cli",
                "gateway",
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env={"KUBECONFIG": self.state.kubeconfig},
        )
        url = f"http://127.0.0.1:{port}"
        _wait_http(f"{url}/healthz")
        self.state.gateway = url
        self.state.save(self.state_file)
        self.prom.add_target(f"127.0.0.1:{port}", job="frugal-gateway")
        return url

    # --- down --------------------------------------------------------------------------------

    def down(self, quiet: bool = False) -> None:
        """Stop everything ``up`` started, in any state (idempotent)."""
        state = State.load(self.state_file)
        if state is not None:
            for name, pid in state.pids.items():
                stop_process(pid, group=True)
                if not quiet:
                    print(f"stopped {name}")
            self.state_file.unlink(missing_ok=True)
        fleet_down(self.workdir / "fleet")


def _wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")
