"""``frugal operator`` as a real process, with its liveness endpoint and metrics to ask."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.controlplane import free_port


@dataclass
class OperatorProcess:
    """One replica: started by ``start``, ended by ``kill``/``terminate`` or ``stop``."""

    kubeconfig: Path
    namespaces: list[str]
    settings: Path
    log: Path
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    health_port: int = 0
    metrics_port: int = 0

    def start(self) -> OperatorProcess:
        self.health_port, self.metrics_port = free_port(), free_port()
        cmd = [sys.executable, "-m", "frugal.cli", "operator", "--settings", str(self.settings)]
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
            self.proc = subprocess.Popen(
                cmd,
                env={**os.environ, "KUBECONFIG": str(self.kubeconfig), "POD_NAME": self.log.stem},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

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
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("frugal_api_writes_total{")
        )

    def signal(self, sig: signal.Signals) -> int:
        """Send ``sig`` and wait for the exit status."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=120)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
