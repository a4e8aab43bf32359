"""``frugal operator`` as a real process, with its liveness endpoint and metrics to ask.

Used by the leader-election and kill tests and by the fleet-scale benchmark (bench/), which
also runs it under a profiler (``command_prefix``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from testbed.controlplane import free_port, stop_process

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class OperatorProcess:
    """One replica: started by ``start``, ended by ``kill``/``terminate`` or ``stop``."""

    kubeconfig: Path
    namespaces: list[str]
    settings: Path
    log: Path
    args: list[str] = field(default_factory=list)
    command_prefix: list[str] = field(default_factory=list)
    """Run under this, e.g. ``py-spy record -o out --``."""
    proc: subprocess.Popen[bytes] | None = None
    health_port: int = 0
    metrics_port: int = 0
    started_at: float = 0.0
    """``time.monotonic()`` when the process was spawned."""

    def start(self) -> OperatorProcess:
        self.health_port, self.metrics_port = free_port(), free_port()
        cmd = [*self.command_prefix, sys.executable, "-m", "frugal.cli", "operator"]
        cmd += ["--settings", str(self.settings)]
        for ns in self.namespaces:
            cmd += ["--namespace", ns]
        cmd += [
            "--log-format",
            "plain",
            "--liveness",
            f"http://127.0.0.1:{self.health_port}/healthz",
            "--metrics-port",
            str(self.metrics_port),
            *self.args,
        ]
        with self.log.open("ab") as out:
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(
                cmd,
                env={**os.environ, "KUBECONFIG": str(self.kubeconfig), "POD_NAME": self.log.stem},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    def wait_metrics(self, timeout: float = 60.0) -> OperatorProcess:
        """Wait until the process serves its metrics (it has started); raise if it exited."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the operator exited; see {self.log}")
            try:
                self.metrics()
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the operator's metrics never answered")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def metrics(self) -> Samples:
        """Every sample of the process's /metrics, by (name, sorted labels)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            text = resp.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def health(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read())

    def role(self) -> str | None:
        """leader, standby, starting or standalone; None while it is not answering."""
        try:
            return self.health()["role"]
        except OSError:
            return None

    def writes(self) -> float:
        """frugal_api_writes_total over all labels, as this process serves it."""
        return total(self.metrics(), "frugal_api_writes_total")

    def signal(self, sig: signal.Signals) -> int:
        """Send ``sig`` and wait for the exit status."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=120)

    def stop(self) -> None:
        """SIGTERM (kopf stops its handlers, the Lease is released), SIGKILL after 30 s."""
        if self.proc is not None and self.proc.poll() is None:
            stop_process(self.proc.pid, grace=30)


def total(samples: Samples, name: str, **match: str) -> float:
    """The sum of every sample called ``name`` whose labels include ``match``."""
    return sum(
        v
        for (n, labels), v in samples.items()
        if n == name and all(dict(labels).get(k) == want for k, want in match.items())
    )
