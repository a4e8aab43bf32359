"""The elector's decision: expiry is judged on the candidate's own clock, never the holder's."""

from __future__ import annotations

import pytest

from frugal.controller.leader import Action, Observation, Record, Timings, decide, observe


def record(holder: str, rv: str, duration: float = 15) -> Record:
    return Record(
        holder=holder, duration=duration, transitions=0, acquired=None, resource_version=rv
    )


def test_a_missing_released_or_own_lease_is_written() -> None:
    assert decide(None, "me", 0) is Action.WRITE
    assert decide(Observation(record("", "1"), 0), "me", 0) is Action.WRITE
    assert decide(Observation(record("me", "1"), 0), "me", 0) is Action.WRITE


def test_another_holder_is_waited_for_until_its_record_is_unchanged_for_its_duration() -> None:
    seen = observe(None, record("other", "1"), now=100)
    assert decide(seen, "me", 114.9) is Action.WAIT
    assert decide(seen, "me", 115) is Action.WRITE


def test_a_renewal_restarts_the_countdown_and_the_same_record_does_not() -> None:
    seen = observe(None, record("other", "1"), now=100)
    assert observe(seen, record("other", "1"), now=110) is seen
    renewed = observe(seen, record("other", "2"), now=110)
    assert renewed.since == 110
    assert decide(renewed, "me", 115) is Action.WAIT


def test_the_records_own_duration_counts() -> None:
    released_fast = observe(None, record("other", "1", duration=1), now=0)
    assert decide(released_fast, "me", 1) is Action.WRITE


@pytest.mark.parametrize("args", [(10, 10, 2), (15, 2, 2), (15, 10, 0)])
def test_timings_that_could_overlap_two_leaders_are_refused(args) -> None:
    with pytest.raises(ValueError, match="lease_duration > renew_deadline"):
        Timings(*args)
