"""The pure part of batched signals: a per-object selector becomes one fleet query, and each
object finds its value in that query's result by its label values."""

from __future__ import annotations

import pytest

from frugal.signals.prometheus import Queries, by_key, fleet_form, grouping


def test_templated_matchers_become_group_labels_constant_ones_stay() -> None:
    g = grouping('job="vllm", model_name="{served_name}",namespace="{namespace}",env!="dev"')
    assert g.constant == 'job="vllm",env!="dev"'
    assert g.by == "model_name, namespace"
    assert g.key({"served_name": "chat", "namespace": "ns", "name": "x"}) == ("chat", "ns")


def test_a_value_may_combine_fields() -> None:
    g = grouping('pod_prefix="{namespace}-{name}"')
    assert g.constant == ""
    assert g.key({"namespace": "a", "name": "b"}) == ("a-b",)


@pytest.mark.parametrize("bad", ['model_name=~"{served_name}.*"', "model_name={served_name}"])
def test_a_placeholder_outside_an_equality_matcher_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="selector"):
        grouping(bad)


def test_each_object_reads_its_own_value_absent_stays_absent() -> None:
    result = [
        {"metric": {"model_name": "a", "namespace": "ns"}, "value": [0, "3"]},
        {"metric": {"model_name": "b", "namespace": "ns"}, "value": [0, "0"]},
        {"metric": {"model_name": "c", "namespace": "ns"}, "value": [0, "NaN"]},
        {"metric": {"model_name": "d", "namespace": "ns"}, "value": [0, "+Inf"]},
    ]
    values = by_key(result, ("model_name", "namespace"))
    assert values == {("a", "ns"): 3.0, ("b", "ns"): 0.0}  # zero is a value
    assert values.get(("c", "ns")) is None  # NaN is absent, not zero
    assert values.get(("e", "ns")) is None  # no series: absent


def test_a_label_prometheus_dropped_reads_as_empty() -> None:
    assert by_key([{"metric": {}, "value": [0, "1"]}], ("namespace",)) == {("",): 1.0}


def test_default_loop_templates_are_fleet_queries_and_render() -> None:
    q = Queries()
    engine = grouping(q.engine_selector)
    for template in (q.in_flight, q.requests, q.tokens_per_second):
        assert fleet_form(template)
        promql = template.format(sel=engine.constant, by=engine.by, window="5m")
        assert "sum by (model_name) (" in promql
        assert "{}" in promql  # no constant matcher: the selector is empty
    tiers = grouping(q.tier_selector)
    promql = q.tier_quality.format(sel=tiers.constant, by=tiers.by, window="30s")
    assert promql.startswith("avg by (policy, namespace, tier) (avg_over_time(")
    assert not fleet_form("sum(vllm:num_requests_running{{{sel}}})")


def test_settings_refuse_a_selector_that_cannot_be_grouped() -> None:
    with pytest.raises(ValueError, match="placeholder"):
        Queries.model_validate({"engineSelector": 'model_name!="{served_name}"'})
