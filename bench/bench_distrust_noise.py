"""What distrust costs a healthy tier, and how fast it catches a real dip.

The gateway stops serving cached answers a tier wrote while its shadow-measured quality was
under its bar (``frugal.gateway.distrust``). The gauge is a rolling mean of noisy comparisons,
so the rule that opens a span decides how often a healthy tier loses its answers to chance.
This replays comparison sequences through the gateway's pure functions (``distrust.step``,
``distrust.covered``) with the window statistics ``shadow.Quality`` computes, for the current
rule (the upper confidence bound of the mean under the bar) and, for comparison, the plain
threshold it replaced (the mean under the bar).

Model: every answer is compared (shadow sample rate 1; a lower rate stretches time, not the
shares), an answer is right with probability q and then scores 1.0, else 0.0 — the engine
simulator's wrong answers share no word with the right one, and a 0/1 comparison is the
noisiest a [0, 1] score with that mean can be. Answer t is given at time t, stored unless its
tier has a span open, and its comparison lands before the next answer.

- steady state: no dip, 200,000 answers per configuration; *lost* is the share of the tier's
  answers that are never served from the cache because of distrust (not stored, or stored and
  later refused). Target: under 1 % wherever q is over the bar.
- detection: a healthy tier (2 windows of warm-up) dips for 500 comparisons and recovers;
  300 runs each. *delay*: k such that a span is open after the comparison of the kth dip
  answer (median and 90th percentile over the runs that caught the dip); *caught*: runs with
  a span open during the dip; *dip kept out*: share of the dip's answers never served from
  the cache.

Seeds are fixed. Prints a table and writes bench/results/distrust_noise.json.
Run: ``.venv/bin/python bench/bench_distrust_noise.py`` (about 30 s on one core).
"""

from __future__ import annotations

import bisect
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from frugal.gateway import distrust
from frugal.gateway.distrust import LEASE_SECONDS, Span
from frugal.gateway.shadow import Reading

RESULTS = Path(__file__).parent / "results" / "distrust_noise.json"
STEADY_ANSWERS = 200_000
DIP_LENGTH = 500
DIP_RUNS = 300

Rule = Callable[[Span | None, Reading, float, float], tuple[Span | None, Span | None]]


def current_rule(
    span: Span | None, reading: Reading, bar: float, now: float
) -> tuple[Span | None, Span | None]:
    return distrust.step(span, "t", reading, threshold=bar, now=now)


def threshold_rule(
    span: Span | None, reading: Reading, bar: float, now: float
) -> tuple[Span | None, Span | None]:
    """The rule before: a span opens as soon as the mean is under the bar."""
    if reading.mean < bar:
        if span is None:
            return Span("t", min(reading.since, now), now + LEASE_SECONDS), None
        return replace(span, until=max(span.until, now + LEASE_SECONDS)), None
    if span is None:
        return None, None
    return None, replace(span, until=now)


RULES: dict[str, Rule] = {"confidence": current_rule, "threshold": threshold_rule}


@dataclass(frozen=True)
class Replay:
    stored: np.ndarray
    """Whether answer t was stored (no span open when it was given)."""
    refused: np.ndarray
    """Whether answer t was stored and later refused (inside a span)."""
    opened: list[int]
    """Answers whose comparison opened a span."""
    open_after: np.ndarray
    """Whether a span is open after answer t's comparison."""


def replay(scores: np.ndarray, window: int, bar: float, rule: Rule) -> Replay:
    """Feed the comparisons of ``scores`` (one per answer, in order) through ``rule``."""
    total = len(scores)
    ends = np.arange(1, total + 1)
    starts = np.maximum(ends - window, 0)
    sums = np.concatenate(([0.0], np.cumsum(scores)))
    squares = np.concatenate(([0.0], np.cumsum(scores * scores)))
    count = ends - starts
    s1 = sums[ends] - sums[starts]
    s2 = squares[ends] - squares[starts]
    mean = s1 / count
    var = np.where(count > 1, (s2 - s1 * s1 / count) / np.maximum(count - 1, 1), 0.0)
    stdev = np.sqrt(np.maximum(var, 0.0))
    stored = np.zeros(total, dtype=bool)
    spans: list[Span] = []
    opened: list[int] = []
    open_after = np.zeros(total, dtype=bool)
    span: Span | None = None
    for t in range(total):
        stored[t] = span is None
        reading = Reading(float(mean[t]), float(stdev[t]), int(count[t]), window, float(starts[t]))
        was = span
        span, closed = rule(span, reading, bar, t + 0.5)
        if closed is not None:
            spans.append(closed)
        if was is None and span is not None:
            opened.append(t)
        open_after[t] = span is not None
    if span is not None:
        spans.append(span)
    since = [s.since for s in spans]
    refused = np.zeros(total, dtype=bool)
    for t in np.flatnonzero(stored):
        i = bisect.bisect_right(since, float(t)) - 1
        refused[t] = i >= 0 and distrust.covered((spans[i],), float(t))
    return Replay(stored, refused, opened, open_after)


Figures = dict[str, dict[str, float | None]]
"""Per rule, its figures."""


def steady(quality: float, window: int, bar: float, seed: int) -> Figures:
    scores = (np.random.default_rng(seed).random(STEADY_ANSWERS) < quality).astype(float)
    out: Figures = {}
    for name, rule in RULES.items():
        r = replay(scores, window, bar, rule)
        not_stored = float(np.mean(~r.stored))
        refused = float(np.mean(r.refused))
        out[name] = {
            "spans": len(r.opened),
            "notStored": not_stored,
            "refused": refused,
            "lost": not_stored + refused,
        }
    return out


def detection(healthy: float, dipped: float, window: int, bar: float, seed: int) -> Figures:
    rng = np.random.default_rng(seed)
    warm = 2 * window
    tail = 2 * window + 200
    q = np.concatenate(
        (np.full(warm, healthy), np.full(DIP_LENGTH, dipped), np.full(tail, healthy))
    )
    runs = [(rng.random(len(q)) < q).astype(float) for _ in range(DIP_RUNS)]
    dip = slice(warm, warm + DIP_LENGTH)
    out: Figures = {}
    for name, rule in RULES.items():
        delays: list[int] = []
        kept_out: list[float] = []
        for scores in runs:
            r = replay(scores, window, bar, rule)
            during = np.flatnonzero(r.open_after[dip])
            if len(during):
                # a span is open after the comparison of the (k)th dip answer (one opened by
                # chance before the dip counts: the threshold rule often has one)
                delays.append(int(during[0]) + 1)
            served = r.stored[dip] & ~r.refused[dip]
            kept_out.append(1.0 - float(np.mean(served)))
        out[name] = {
            "caught": len(delays) / DIP_RUNS,
            "delayMedian": float(np.median(delays)) if delays else None,
            "delayP90": float(np.percentile(delays, 90)) if delays else None,
            "dipKeptOut": float(np.mean(kept_out)),
        }
    return out


STEADY = [
    # (label, quality, window, bar)
    ("demo small tier", 0.96, 10, 0.94),
    ("demo medium tier", 0.98, 10, 0.94),
    ("", 0.96, 10, 0.93),
    ("", 0.96, 50, 0.93),
    ("", 0.96, 200, 0.94),
    ("example manifest, default window", 0.96, 200, 0.93),
    ("example manifest, medium tier", 0.98, 200, 0.93),
    ("just over the bar", 0.95, 200, 0.94),
    ("just over the bar, small window", 0.95, 10, 0.94),
    ("tiny window", 0.96, 4, 0.94),
]
DIPS = [
    # (label, healthy, dipped, window, bar)
    ("", 0.96, 0.6, 10, 0.94),
    ("", 0.96, 0.6, 50, 0.93),
    ("", 0.96, 0.6, 200, 0.94),
    ("", 0.96, 0.6, 200, 0.93),
    ("demo dip", 0.96, 0.75, 10, 0.94),
    ("small dip", 0.96, 0.9, 10, 0.94),
    ("small dip", 0.96, 0.9, 200, 0.93),
    ("outage", 0.96, 0.0, 10, 0.94),
]


def pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def num(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"


def main() -> None:
    started = time.perf_counter()
    steady_rows = []
    print("steady state (no dip): share of a healthy tier's answers lost to distrust")
    print(f"{'q':>5} {'window':>6} {'bar':>5} | {'lost now':>9} {'spans':>6} | {'lost before':>11}")
    for seed, (label, q, w, b) in enumerate(STEADY, start=1):
        figures = steady(q, w, b, seed)
        steady_rows.append({"label": label, "quality": q, "window": w, "bar": b, **figures})
        now, before = figures["confidence"], figures["threshold"]
        print(
            f"{q:>5} {w:>6} {b:>5} | {pct(now['lost']):>9} {num(now['spans']):>6} | "
            f"{pct(before['lost']):>11}  {label}"
        )
    dip_rows = []
    print(f"\ndetection: {DIP_LENGTH}-comparison dip, {DIP_RUNS} runs each (now | before)")
    print(
        f"{'dip':>10} {'window':>6} {'bar':>5} | {'caught':>6} {'delay p50/p90':>13} "
        f"{'dip kept out':>12} | {'delay p50/p90':>13} {'dip kept out':>12}"
    )
    for seed, (label, q0, q1, w, b) in enumerate(DIPS, start=101):
        figures = detection(q0, q1, w, b, seed)
        dip_rows.append(
            {"label": label, "healthy": q0, "dipped": q1, "window": w, "bar": b, **figures}
        )
        now, before = figures["confidence"], figures["threshold"]
        print(
            f"{f'{q0}->{q1}':>10} {w:>6} {b:>5} | {pct(now['caught']):>6} "
            f"{num(now['delayMedian']) + '/' + num(now['delayP90']):>13} "
            f"{pct(now['dipKeptOut']):>12} | "
            f"{num(before['delayMedian']) + '/' + num(before['delayP90']):>13} "
            f"{pct(before['dipKeptOut']):>12}  {label}"
        )
    seconds = time.perf_counter() - started
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "rule": {
                    "confidence": distrust.CONFIDENCE,
                    "z": distrust.Z,
                    "minComparisons": distrust.MIN_COMPARISONS,
                },
                "steadyAnswers": STEADY_ANSWERS,
                "dipLength": DIP_LENGTH,
                "dipRuns": DIP_RUNS,
                "steady": steady_rows,
                "detection": dip_rows,
                "machine": f"{platform.python_version()} {platform.machine()}",
                "seconds": round(seconds, 1),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\n{seconds:.0f} s; written to {RESULTS}")


if __name__ == "__main__":
    main()
