"""A flood at a tier at zero: the wake queue stays bounded and the gateway's memory stays flat.

`frugal gateway serve` runs as its own process (auth on, one tenant) with two policies: `chat`,
whose only tier is an endpoint at zero (`scaledToZero: true`, nothing listening on its port, so
its wake never completes on its own), and `healthy`, a running engine simulator. Each round:

1. flood — `--concurrency` clients (aiohttp, this process) post to `chat` back to back for
   `--duration` seconds. `limits.wakeQueue` of them are held; every other request must get 503
   `wake_queue_full` with `Retry-After` at once. One client meanwhile asks `healthy` in a loop
   (is the rest of the gateway still served?). The gateway's RSS (from /proc) is sampled twice
   a second, its `/metrics` every two seconds;
2. late wake — the simulator starts on the sleeping tier's port: the held requests must each be
   sent upstream exactly once (the simulator's `vllm:request_success_total`) and answered 200;
3. back to sleep — the simulator stops (its port refuses again), for the next round.

After the last round the clients close their connections and the gateway must be back where it
started: `frugal_gateway_waiting` and `frugal_gateway_in_flight` at 0, as many open file
descriptors as before the flood. A leak of even a hundred bytes per refused request would show
as a rising RSS over the flood's second half (the slope is fitted per 10,000 requests) and as a
higher RSS in round 2 than in round 1.

Usage: .venv/bin/python bench/bench_gateway_flood.py [--duration 45] [--rounds 2]
       [--concurrency 500] [--wake-queue 64] [--json bench/results/gateway_flood.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "e2e"), str(REPO / "tests"), str(REPO / "bench")]

from bench_gateway_overhead import (  # noqa: E402
    API_KEY,
    Target,
    cpu_seconds,
    free_port,
    spawn,
    wait_ready,
)

from frugal.gateway.testing import routing_policy, scrape, total  # noqa: E402
from testbed.fleet import process_rss  # noqa: E402

MB = 1024 * 1024
SIM_MODEL = "sim"
HEADERS = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}


def gateway_config(
    sleepy_url: str, awake_url: str, wake_queue: int, budget: float
) -> dict[str, Any]:
    def policy(name: str, endpoint: str) -> dict[str, Any]:
        tier = {"name": "small", "endpointRef": {"name": endpoint}, "weight": 100}
        return routing_policy(name, name, [tier], namespace="bench")

    return {
        "namespace": "bench",
        "auth": {"required": True},
        "tenants": [{"name": "bench", "apiKeys": [API_KEY], "cost": {"team": "perf"}}],
        "upstreams": {
            "sleepy": {
                "url": sleepy_url,
                "servedName": SIM_MODEL,
                "scaledToZero": True,
                "coldStartBudget": f"{budget:.0f}s",
            },
            "awake": {"url": awake_url, "servedName": SIM_MODEL},
        },
        "policies": [policy("chat", "sleepy"), policy("healthy", "awake")],
        "limits": {"wakeQueue": wake_queue},
    }


def start_sim(port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "frugal.enginesim", "--port", str(port), "--model", SIM_MODEL]
    cmd += ["--tokens-per-second", "0", "--ttft-seconds", "0", "--answer-tokens", "16"]
    return spawn([*cmd, "--max-num-seqs", "1024", "--log-level", "WARNING"], log)


def stop(proc: subprocess.Popen[bytes]) -> None:
    Target("proc", proc=proc).stop()


def open_fds(pid: int) -> int:
    """Open file descriptors (sockets included) of a process."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def body(i: int, model: str) -> bytes:
    text = f"flood {i}: what is my card limit?"
    return json.dumps({"model": model, "messages": [{"role": "user", "content": text}]}).encode()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


@dataclass
class Flood:
    """Counts of one round, kept by the clients as answers come."""

    sent: int = 0
    refused: int = 0
    refused_well: int = 0
    """503s with code ``wake_queue_full`` and a ``Retry-After`` header."""
    served: int = 0
    other: dict[str, int] = field(default_factory=dict)
    pending: int = 0
    healthy_ms: list[float] = field(default_factory=list)
    healthy_errors: int = 0


async def client(session: aiohttp.ClientSession, url: str, stop_at: float, f: Flood) -> None:
    """Posts back to back until ``stop_at``; a held request keeps its client until answered."""
    loop = asyncio.get_running_loop()
    while loop.time() < stop_at:
        f.sent += 1
        f.pending += 1
        try:
            async with session.post(url, data=body(f.sent, "chat"), headers=HEADERS) as resp:
                payload = await resp.read()
                if resp.status == 503:
                    f.refused += 1
                    if b"wake_queue_full" in payload and "Retry-After" in resp.headers:
                        f.refused_well += 1
                elif resp.status == 200:
                    f.served += 1
                else:
                    f.other[str(resp.status)] = f.other.get(str(resp.status), 0) + 1
        except (aiohttp.ClientError, TimeoutError) as err:
            f.other[type(err).__name__] = f.other.get(type(err).__name__, 0) + 1
        finally:
            f.pending -= 1


async def healthy_loop(session: aiohttp.ClientSession, url: str, stop_at: float, f: Flood) -> None:
    """One request at a time to the healthy tier, its latency recorded."""
    loop = asyncio.get_running_loop()
    i = 0
    while loop.time() < stop_at:
        i += 1
        t0 = loop.time()
        try:
            async with session.post(url, data=body(i, "healthy"), headers=HEADERS) as resp:
                await resp.read()
                ok = resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        if ok:
            f.healthy_ms.append(1000 * (loop.time() - t0))
        else:
            f.healthy_errors += 1
        await asyncio.sleep(0.05)


async def until(check: Any, timeout: float) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def sim_requests(port: int) -> float:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{port}/metrics") as resp,
    ):
        text = await resp.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vllm:request_success_total")
    )


@dataclass
class Rig:
    """What the rounds share: the gateway process, its address, the sleeping tier's port."""

    gw: subprocess.Popen[bytes]
    base: str
    sleepy_port: int
    metrics: aiohttp.ClientSession
    """A session of its own for /metrics, so scrapes do not queue behind the flood."""
    work: Path
    t_zero: float
    samples: list[list[float]] = field(default_factory=list)
    """(seconds, gateway RSS in MB, requests sent so far in the round, round), twice a second."""


async def run_round(n: int, args: argparse.Namespace, rig: Rig) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    f = Flood()
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=args.duration + 120)
    waiting_seen: list[float] = []
    gw, samples, metrics = rig.gw, rig.samples, rig.metrics
    cpu0 = cpu_seconds(gw.pid)
    fds_peak = 0
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = loop.time()
        stop_at = start + args.duration
        url = f"{rig.base}/v1/chat/completions"
        clients = [
            asyncio.create_task(client(session, url, stop_at, f)) for _ in range(args.concurrency)
        ]
        side = asyncio.create_task(healthy_loop(session, url, stop_at, f))
        next_scrape = start
        while loop.time() < stop_at:
            await asyncio.sleep(0.5)
            now = loop.time()
            samples.append([round(now - rig.t_zero, 2), process_rss(gw.pid) / MB, f.sent, n])
            fds_peak = max(fds_peak, open_fds(gw.pid))
            if now >= next_scrape:
                waiting_seen.append(total(await scrape(metrics), "frugal_gateway_waiting"))
                next_scrape = now + 2.0
        await side
        elapsed = loop.time() - start
        cpu_used = cpu_seconds(gw.pid) - cpu0
        flood = [s for s in samples if s[3] == n]

        # The flood is over: every client not held has had its 503 and stopped.
        async def held_only() -> bool:
            return sum(not c.done() for c in clients) <= args.wake_queue

        await until(held_only, 60)
        held = sum(not c.done() for c in clients)
        waiting_at_end = total(await scrape(metrics), "frugal_gateway_waiting")
        sim = start_sim(rig.sleepy_port, rig.work / f"sleepy-{n}.log")
        try:
            await asyncio.gather(*clients)
            upstream_calls = await sim_requests(rig.sleepy_port)  # a fresh simulator: from 0
        finally:
            stop(sim)  # asleep again for the next round: its port refuses
    half = flood[len(flood) // 2 :]
    slope = statistics.linear_regression([s[2] for s in half], [s[1] for s in half]).slope
    early = next(s for s in flood if s[0] - flood[0][0] >= 0.1 * args.duration)
    rss = [s[1] for s in flood]
    answered = f.refused + f.served + sum(f.other.values())
    return {
        "seconds": round(elapsed, 1),
        "sent": f.sent,
        "answered": answered,
        "refused_503": f.refused,
        "refused_wake_queue_full_with_retry_after": f.refused_well,
        "other": f.other,
        "held_at_end_of_flood": held,
        "waiting_gauge_max": max(waiting_seen),
        "waiting_gauge_at_end_of_flood": waiting_at_end,
        "served_200_after_wake": f.served,
        "upstream_calls_after_wake": upstream_calls,
        "refused_per_second": round(f.refused / elapsed),
        "gateway_cpu_us_per_request": round(1e6 * cpu_used / max(answered, 1), 1),
        "rss_mb_at_10pct": round(early[1], 1),
        "rss_mb_peak": round(max(rss), 1),
        "rss_mb_end_of_flood": round(rss[-1], 1),
        "rss_growth_mb_10pct_to_end": round(rss[-1] - early[1], 2),
        "rss_slope_kb_per_10k_requests_second_half": round(slope * 10_000 * 1024, 1),
        "fds_peak": fds_peak,
        "healthy_requests": len(f.healthy_ms),
        "healthy_errors": f.healthy_errors,
        "healthy_p50_ms": round(pct(f.healthy_ms, 50), 2) if f.healthy_ms else None,
        "healthy_p99_ms": round(pct(f.healthy_ms, 99), 2) if f.healthy_ms else None,
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-flood-"))
    awake_port, sleepy_port, gw_port = free_port(), free_port(), free_port()
    awake = start_sim(awake_port, work / "awake.log")
    cfg = work / "gateway.yaml"
    budget = args.duration + 120
    cfg.write_text(
        yaml.safe_dump(
            gateway_config(
                f"http://127.0.0.1:{sleepy_port}",
                f"http://127.0.0.1:{awake_port}",
                args.wake_queue,
                budget,
            )
        )
    )
    base = f"http://127.0.0.1:{gw_port}"
    cmd = [sys.executable, "-m", "frugal.gateway.cli", "serve", "--config", str(cfg)]
    cmd += ["--host", "127.0.0.1", "--port", str(gw_port), "--log-level", "WARNING"]
    gw = spawn(cmd, work / "gateway.log")
    samples: list[list[float]] = []
    out: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "load_before": os.getloadavg()},
        "params": {
            "duration_s": args.duration,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "wake_queue": args.wake_queue,
            "cold_start_budget_s": budget,
        },
    }
    try:
        wait_ready(Target("awake", url=f"http://127.0.0.1:{awake_port}/v1/chat/completions"), 30)
        wait_ready(
            Target("frugal", url=f"{base}/v1/chat/completions", model="healthy", proc=gw), 60
        )
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession(base_url=base) as metrics:
            rig = Rig(gw, base, sleepy_port, metrics, work, loop.time(), samples)
            warm = Flood()  # the healthy path warmed up, so round 1 does not pay for imports
            await healthy_loop(metrics, "/v1/chat/completions", loop.time() + 3, warm)
            await asyncio.sleep(1)
            out["rss_mb_idle_before"] = round(process_rss(gw.pid) / MB, 1)
            out["fds_idle_before"] = open_fds(gw.pid)
            out["healthy_idle_p50_ms"] = round(pct(warm.healthy_ms, 50), 2)
            out["healthy_idle_p99_ms"] = round(pct(warm.healthy_ms, 99), 2)
            rounds = []
            for n in range(1, args.rounds + 1):
                result = await run_round(n, args, rig)
                rounds.append(result)
                print(f"round {n}: {json.dumps(result)}", flush=True)
            out["rounds"] = rounds
            await asyncio.sleep(2)  # the flood's connections closed; let the gateway see it

            async def released() -> bool:
                s = await scrape(metrics)
                idle = total(s, "frugal_gateway_waiting") + total(s, "frugal_gateway_in_flight")
                return idle == 0 and open_fds(gw.pid) <= out["fds_idle_before"]

            out["settled"] = await until(released, 30)
            after = await scrape(metrics)
            out["waiting_after"] = total(after, "frugal_gateway_waiting")
            out["in_flight_after"] = total(after, "frugal_gateway_in_flight")
            out["fds_after"] = open_fds(gw.pid)
            out["rss_mb_after"] = round(process_rss(gw.pid) / MB, 1)
            counted = total(after, "frugal_gateway_requests_total", policy="chat", code="503")
            out["gateway_counted_503"] = counted
    finally:
        stop(gw)
        stop(awake)
        out["machine"]["load_after"] = os.getloadavg()
        shutil.rmtree(work, ignore_errors=True)
    out["checks"] = checks(out, args)
    out["samples_t_rss_mb_sent_round"] = [[s[0], round(s[1], 1), *s[2:]] for s in samples]
    return out


def checks(out: dict[str, Any], args: argparse.Namespace) -> dict[str, bool]:
    """What must hold whatever the machine's speed (the figures are reported, not judged)."""
    r = out["rounds"]
    q = args.wake_queue
    return {
        "every_refusal_is_503_wake_queue_full_with_retry_after": all(
            x["refused_503"] == x["refused_wake_queue_full_with_retry_after"] and not x["other"]
            for x in r
        ),
        "held_equals_the_queue_bound": all(
            x["held_at_end_of_flood"] == q == x["waiting_gauge_at_end_of_flood"]
            and x["waiting_gauge_max"] <= q
            for x in r
        ),
        "held_requests_sent_upstream_exactly_once": all(
            x["served_200_after_wake"] == q == x["upstream_calls_after_wake"] for x in r
        ),
        "gateway_counted_every_503": out["gateway_counted_503"] == sum(x["refused_503"] for x in r),
        "healthy_tier_served_throughout": all(x["healthy_errors"] == 0 for x in r),
        "gauges_and_fds_back_to_idle": bool(out["settled"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=45.0, help="seconds of flood per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--wake-queue", type=int, default=64)
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "gateway_flood.json"))
    args = parser.parse_args()
    started = time.monotonic()
    out = asyncio.run(bench(args))
    out["wall_seconds"] = round(time.monotonic() - started)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print(
        json.dumps({k: v for k, v in out.items() if k != "samples_t_rss_mb_sent_round"}, indent=1)
    )
    if not all(out["checks"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
