"""Bad input, fuzzed: every object is refused at admission or handled — the operator never fails.

Valid specs from the strategies are mutated at random (a leaf replaced by any JSON value, a key
dropped, an unknown key added) and sent to the real API server while the real operator runs.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes.client import ApiException

from frugal.settings import Settings
from support.operator import running_operator
from support.strategies import KIND_SPECS
from support.wait import wait_for

pytestmark = pytest.mark.cluster

json_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    spec = draw(KIND_SPECS[kind])
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(spec)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = spec
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "drop", "unknown"]))
        if action == "replace":
            parent[path[-1]] = draw(json_value)
        elif action == "drop" and isinstance(parent, dict):
            parent.pop(path[-1], None)
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(json_value)
    return spec


# kopf's own threads use `random` (retry jitter) while hypothesis draws; that is not ours.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module")
@pytest.mark.parametrize("kind", ["InferenceEndpoint", "RoutingPolicy", "CachePolicy"])
def test_fuzzed_objects_are_refused_or_handled(cluster, namespace, kind) -> None:
    accepted: list[str] = []
    refused: list[tuple[int, str]] = []
    counter = iter(range(10**6))
    settings_ = Settings.model_validate({"reconcileIntervalSeconds": 1})

    with running_operator(str(cluster.kubeconfig), [namespace], settings_) as runner:

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(mutated(kind))
        def send(spec: dict) -> None:
            name = f"fz-{next(counter)}"
            obj = {
                "apiVersion": "frugal.dev/v1alpha1",
                "kind": kind,
                "metadata": {"name": name, "namespace": namespace},
                "spec": spec,
            }
            try:
                cluster.apply(obj)
            except ApiException as err:
                refused.append((err.status, json.loads(err.body or "{}").get("message", "")))
                return
            accepted.append(name)

        send()
        assert refused, "the fuzzer never produced an invalid object"
        assert accepted, "the fuzzer never produced a valid object"
        for status, message in refused:
            assert status in (400, 422, 500), (status, message)
            assert message, "a refusal must say why"
        print(f"{kind}: {len(accepted)} accepted, {len(refused)} refused", flush=True)
        # Every accepted object is taken up by the operator (a status it wrote).
        for name in accepted:
            wait_for(
                lambda n=name: (
                    cluster.get(kind, namespace, n).get("status", {}).get("observedGeneration")
                    is not None
                    or kind == "CachePolicy"
                ),
                timeout=120,
                what=f"{kind} {name} handled",
            )
    output = runner.output
    assert "Traceback" not in output, output[-4000:]
    assert "failed with an exception" not in output, output[-4000:]
