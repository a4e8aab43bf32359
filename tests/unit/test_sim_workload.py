"""The workload model: loading, diurnal shares, parameter paths, seeded draws."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from frugal.sim.engine import make_draws, step_shares
from frugal.sim.workload import Workload, get_path, load_workload, with_value


@pytest.fixture(scope="module")
def case() -> Workload:
    return load_workload()


def test_case_study_loads_with_the_papers_volume(case: Workload) -> None:
    assert case.volume.queries_per_day == 50_000
    assert case.volume.days == 30
    assert sum(case.class_shares().values()) == pytest.approx(1.0)
    assert {c.name for c in case.classes} == {"faq", "account", "complex"}
    # every uncertain input has a range, and every range names a real parameter
    assert len(case.sensitivity) >= 10
    for path, (low, high) in case.sensitivity.items():
        assert low <= get_path(case, path) <= high, path


def test_hourly_shares_sum_to_one_and_flatten_with_amplitude(case: Workload) -> None:
    shares = case.volume.hourly_shares()
    assert sum(shares) == pytest.approx(1.0)
    # the profile peaks at hours 10-11: weight 2.0 of a total 26.75 (0.35 + 0.25 + ... + 0.5)
    assert shares[10] == pytest.approx(2.0 / 26.75)
    flat = case.volume.model_copy(update={"diurnal_amplitude": 0.0}).hourly_shares()
    assert flat == pytest.approx([1 / 24] * 24)


def test_step_shares_split_hours_evenly(case: Workload) -> None:
    quarter = case.volume.model_copy(update={"step_minutes": 15})
    w = case.model_copy(update={"volume": quarter})
    shares = step_shares(w)
    assert len(shares) == 96
    assert shares.sum() == pytest.approx(1.0)
    # the four quarters of hour 10 each carry a quarter of its share
    assert shares[40] == pytest.approx(case.volume.hourly_shares()[10] / 4)


def test_with_value_changes_one_parameter_and_revalidates(case: Workload) -> None:
    changed = with_value(case, "cache.paraphraseRate", 0.3)
    assert changed.cache.paraphrase_rate == 0.3
    assert case.cache.paraphrase_rate == 0.168  # the original is untouched
    assert get_path(with_value(case, "classes.complex.share", 0.3), "classes.complex.share") == 0.3
    with pytest.raises(ValueError, match="unknown workload parameter"):
        with_value(case, "cache.nope", 1)
    with pytest.raises(ValidationError):
        with_value(case, "cache.paraphraseRate", 2.0)  # a rate above 1


def test_class_without_quality_for_a_tier_is_refused(case: Workload) -> None:
    data = case.model_dump(by_alias=True)
    del data["classes"][0]["quality"]["small"]
    with pytest.raises(ValidationError, match="no quality for tiers"):
        Workload.model_validate(data)


def test_draws_are_seeded(case: Workload) -> None:
    a, b = make_draws(case), make_draws(case)
    assert np.array_equal(a.arrivals, b.arrivals)
    assert np.array_equal(a.reclaim, b.reclaim)
    other = make_draws(case.model_copy(update={"seed": case.seed + 1}))
    assert not np.array_equal(a.arrivals, other.arrivals)
    # 720 hourly steps whose Poisson arrivals add up to about 30 × 50,000
    assert len(a.arrivals) == 720
    assert a.arrivals.sum() == pytest.approx(1_500_000, rel=0.01)


def test_cache_warms_with_volume(case: Workload) -> None:
    busy = make_draws(case).warm
    quiet = make_draws(with_value(case, "volume.queriesPerDay", 500)).warm
    assert busy[0] < busy[24]  # empty at the start of the month
    assert busy[24:].min() > 0.99  # 27,500 cacheable queries per day over 500 topics
    assert quiet[24:].mean() < 0.8
