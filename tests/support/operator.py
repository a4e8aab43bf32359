"""Run the real operator in-process (kopf.testing.KopfRunner) against a test cluster."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import kopf
from kopf.testing import KopfRunner

from frugal.controller import kopfperf
from frugal.controller.operator import build_registry, operator_settings
from frugal.settings import Settings


@contextlib.contextmanager
def running_operator(
    kubeconfig: str,
    namespaces: list[str],
    settings: Settings | None = None,
    registry: kopf.OperatorRegistry | None = None,
) -> Iterator[KopfRunner]:
    """The operator with production wiring, watching ``namespaces``, stopped on exit.

    ``registry`` replaces the production registry built from ``settings`` (for a test that
    registers extra handlers or overrides).
    """
    settings = settings or Settings(reconcile_interval_seconds=2)
    kopfperf.install()  # as ``operator.run`` does
    args = ["run", "--standalone"]
    for ns in namespaces:
        args += ["--namespace", ns]
    old = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = kubeconfig
    try:
        with KopfRunner(
            args,
            registry=registry or build_registry(settings),
            settings=operator_settings(),
            timeout=60,
        ) as runner:
            yield runner
    finally:
        if old is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = old
    if runner.exception is not None:
        raise runner.exception
    assert runner.exit_code == 0, runner.output


def counter_total(metric: Any, **labels: str) -> float:
    """The sum of an in-process counter's samples whose labels include ``labels``."""
    return sum(
        sample.value
        for family in metric.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
        and all(sample.labels.get(k) == v for k, v in labels.items())
    )
