"""The control loops' pure policies: scaling, scale-to-zero and wake, rerouting, spot share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from frugal.api.endpoint import Scaling
from frugal.api.routing import RoutingPolicySpec
from frugal.policy.reroute import RerouteState, TierSignals, decide_reroute, fleet_quality
from frugal.policy.scale import LoadSignals, ScaleState, decide_scale
from frugal.policy.spot import decide_spot_share

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


# --- scale ----------------------------------------------------------------------------------

SCALING = Scaling(min_replicas=0, max_replicas=5, idle_after="10m", target_in_flight=10)


def test_scale_up_at_once_and_down_only_after_stabilisation() -> None:
    state = ScaleState(1)
    up = decide_scale(SCALING, LoadSignals(in_flight=42, requests_in_idle_window=100), state, T0)
    assert (up.replicas, up.action) == (5, "ScaleUp")
    calm = LoadSignals(in_flight=5, requests_in_idle_window=100)
    held = decide_scale(SCALING, calm, up.state, T0 + minutes(1))
    assert (held.replicas, held.action) == (5, "Hold")
    down = decide_scale(SCALING, calm, held.state, T0 + minutes(7))
    assert (down.replicas, down.action) == (1, "ScaleDown")


def test_idle_goes_to_zero_only_on_present_signals() -> None:
    state = ScaleState(1)
    idle = LoadSignals(in_flight=0, requests_in_idle_window=0)
    assert decide_scale(SCALING, idle, state, T0).action == "ScaleToZero"
    absent = decide_scale(SCALING, LoadSignals(in_flight=0), state, T0)
    assert (absent.replicas, absent.action) == (1, "Hold")
    nothing = decide_scale(SCALING, LoadSignals(), state, T0)
    assert nothing.action == "Hold"
    assert "absent" in nothing.reason
    pinned = Scaling(min_replicas=1, max_replicas=5)
    assert decide_scale(pinned, idle, state, T0).replicas == 1


def test_wake_from_zero_and_stay_up_for_the_idle_window() -> None:
    zero = ScaleState(0)
    assert decide_scale(SCALING, LoadSignals(), zero, T0).action == "Hold"
    woke = decide_scale(SCALING, LoadSignals(wake_requested=True), zero, T0)
    assert (woke.replicas, woke.action) == (1, "Wake")
    # The fresh engine's counters cannot prove idleness yet.
    idle = LoadSignals(in_flight=0, requests_in_idle_window=0)
    assert decide_scale(SCALING, idle, woke.state, T0 + minutes(2)).action == "Hold"
    assert decide_scale(SCALING, idle, woke.state, T0 + minutes(11)).action == "ScaleToZero"


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(st.none() | st.floats(0, 500), st.none() | st.floats(0, 50), st.booleans()),
        max_size=40,
    ),
    st.integers(0, 3),
    st.integers(1, 8),
)
def test_replicas_always_within_bounds_and_absent_never_lowers(seq, lo, span) -> None:
    scaling = Scaling(min_replicas=lo, max_replicas=lo + span, idle_after="5m")
    state = ScaleState(max(lo, 1))
    now = T0
    for in_flight, requests, wake in seq:
        now += minutes(1)
        d = decide_scale(scaling, LoadSignals(in_flight, requests, wake), state, now)
        assert d.replicas == 0 or scaling.min_replicas <= d.replicas <= scaling.max_replicas
        if in_flight is None and not wake:
            assert d.replicas >= state.replicas or d.replicas >= lo
            assert d.action in ("Hold", "ScaleUp", "ScaleDown")
            if state.replicas > 0:
                assert d.replicas == min(max(state.replicas, lo), lo + span)
        state = d.state


# --- reroute --------------------------------------------------------------------------------


def policy(**auto) -> RoutingPolicySpec:
    return RoutingPolicySpec.model_validate(
        {
            "modelName": "m",
            "tiers": [
                {"name": "small", "endpointRef": {"name": "s"}, "weight": 70, "minWeight": 20},
                {"name": "medium", "endpointRef": {"name": "m"}, "weight": 25},
                {"name": "large", "endpointRef": {"name": "l"}, "weight": 5, "minWeight": 5},
            ],
            "objectives": {"minQuality": 0.9},
            "autoReroute": {
                "enabled": True,
                "maxStep": 10,
                "cooldown": "5m",
                "hysteresis": 0.02,
                **auto,
            },
        }
    )


GOOD = {"small": TierSignals(0.95), "medium": TierSignals(0.97), "large": TierSignals(1.0)}
DIP = {"small": TierSignals(0.6), "medium": TierSignals(0.97), "large": TierSignals(1.0)}


def test_quality_dip_moves_weight_up_and_recovery_moves_it_back() -> None:
    spec = policy()
    state = RerouteState({"small": 70, "medium": 25, "large": 5})
    d = decide_reroute(spec, DIP, state, T0)
    assert d.action == "Reroute"
    assert d.weights == {"small": 60, "medium": 35, "large": 5}
    assert d.signals["quality.small"] == 0.6
    assert "below 0.9" in d.reason
    held = decide_reroute(spec, DIP, d.state, T0 + minutes(1))
    assert (held.action, held.weights) == ("Hold", d.weights)
    assert "cooldown" in held.reason
    state = d.state
    for i in range(10):
        state = decide_reroute(spec, DIP, state, T0 + minutes(6 * (i + 1))).state
    assert fleet_quality(state.weights, DIP) >= 0.9 - 0.02
    # Recovered: traffic drifts back to the cheap tier while predicted quality holds.
    later = T0 + minutes(200)
    for i in range(20):
        state = decide_reroute(spec, GOOD, state, later + minutes(6 * i)).state
    assert state.weights["small"] >= 60


def test_absent_quality_holds_weights() -> None:
    spec = policy()
    state = RerouteState({"small": 70, "medium": 25, "large": 5})
    d = decide_reroute(
        spec, {"small": TierSignals(None), **{k: GOOD[k] for k in ("medium", "large")}}, state, T0
    )
    assert (d.action, d.weights) == ("Hold", {"small": 70, "medium": 25, "large": 5})
    assert "absent" in d.reason


def test_a_down_step_that_breaks_quality_is_rolled_back_at_once() -> None:
    spec = policy(maxStep=30)
    state = RerouteState({"small": 40, "medium": 55, "large": 5})
    down = decide_reroute(spec, GOOD, state, T0)
    assert down.action == "Reroute"
    assert down.weights["small"] > 40
    # The cheap tier turns out worse under the extra load: quality drops below the bar.
    worse = {**GOOD, "small": TierSignals(0.7)}
    back = decide_reroute(spec, worse, down.state, T0 + minutes(1))
    assert back.action == "Rollback"
    assert back.weights == {"small": 40, "medium": 55, "large": 5}


def test_hysteresis_prevents_flapping_around_the_bar() -> None:
    spec = policy(cooldown="1m")
    state = RerouteState({"small": 70, "medium": 25, "large": 5})
    changes = 0
    for i in range(60):
        q = 0.9 + (0.01 if i % 2 else -0.01)  # oscillates inside the ±0.02 band
        signals = {"small": TierSignals(q), "medium": TierSignals(q), "large": TierSignals(q)}
        d = decide_reroute(spec, signals, state, T0 + minutes(2 * i))
        changes += d.action != "Hold"
        state = d.state
    assert changes == 0


def test_cost_objective_met_means_no_move() -> None:
    spec = RoutingPolicySpec.model_validate(
        {
            **policy().model_dump(by_alias=True),
            "objectives": {"minQuality": 0.9, "maxCostPer1kRequests": 1.0},
        }
    )
    signals = {k: TierSignals(v.quality, 0.5) for k, v in GOOD.items()}
    d = decide_reroute(spec, signals, RerouteState({"small": 40, "medium": 55, "large": 5}), T0)
    assert d.action == "Hold"
    assert "meet the objectives" in d.reason


quality = st.none() | st.floats(0, 1)


@settings(max_examples=300)
@given(
    st.lists(st.tuples(quality, quality, quality, st.integers(0, 20)), max_size=40),
    st.integers(1, 50),
    st.floats(0, 0.2),
)
def test_weights_always_sum_to_100_within_bounds(seq, step, band) -> None:
    spec = policy(maxStep=step, hysteresis=round(band, 3), cooldown="1m")
    bounds = {t.name: (t.min_weight, t.max_weight) for t in spec.tiers}
    state = RerouteState({"small": 70, "medium": 25, "large": 5})
    now = T0
    for qs, qm, ql, gap in seq:
        now += minutes(gap)
        signals = {"small": TierSignals(qs), "medium": TierSignals(qm), "large": TierSignals(ql)}
        d = decide_reroute(spec, signals, state, now)
        assert sum(d.weights.values()) == 100
        for name, w in d.weights.items():
            assert bounds[name][0] <= w <= bounds[name][1]
        if fleet_quality(state.weights, signals) is None:
            assert d.weights == state.weights
        moved = sum(abs(d.weights[n] - state.weights[n]) for n in d.weights) // 2
        assert moved <= max(step, 100)
        state = d.state


def test_disabled_policy_keeps_spec_weights() -> None:
    d = decide_reroute(policy(enabled=False), DIP, RerouteState({}), T0)
    assert d.weights == {"small": 70, "medium": 25, "large": 5}
    assert d.action == "Hold"


# --- spot -----------------------------------------------------------------------------------


def test_spot_share_backs_off_and_returns() -> None:
    hits = [T0 - minutes(30), T0 - minutes(10)]
    lowered = decide_spot_share(hits, None, 0.6, T0)
    assert (lowered.action, lowered.limit) == ("LowerSpotShare", 0.3)
    again = decide_spot_share(hits, 0.3, 0.6, T0 + minutes(5), last_change=T0)
    assert again.action == "Hold"
    quiet = T0 + timedelta(hours=7)
    restored = decide_spot_share(hits, 0.3, 0.6, quiet, last_change=T0)
    assert (restored.action, restored.limit) == ("RestoreSpotShare", None)
    assert decide_spot_share([], None, 0.6, T0).action == "Hold"


def test_spot_capacity_gone_moves_everything_to_on_demand_at_once() -> None:
    d = decide_spot_share([T0], None, 0.6, T0, unavailable_for=timedelta(seconds=90))
    assert (d.action, d.limit) == ("LowerSpotShare", 0.0)
    assert "on-demand" in d.reason
    again = decide_spot_share([T0], 0.0, 0.6, T0 + minutes(1), unavailable_for=minutes(1))
    assert again.action == "Hold"
