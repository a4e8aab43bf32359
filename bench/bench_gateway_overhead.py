"""Gateway overhead: added latency and throughput of a proxy in front of a fast engine.

One engine simulator (`python -m frugal.enginesim --tokens-per-second 0 --ttft-seconds 0`,
16-token answers) is called, side by side in one run:

- direct            the simulator itself (the baseline every overhead is measured against);
- frugal            `frugal gateway serve`, a RoutingPolicy with one tier, caching OFF;
- frugal+exact      the same with a CachePolicy (exact cache on, memory backend) — every
                    request is unique, so 0% hits: the cost of a lookup and a store per miss;
- aiohttp-floor     a 30-line aiohttp pass-through proxy defined here (parse the JSON, rewrite
                    `model`, forward with one shared ClientSession, relay): the floor of any
                    proxy built on the same stack as frugal's gateway (aiohttp server + client),
                    so frugal − floor is the cost of frugal's own logic;
- vllm-router       PyPI `vllm-router` (Rust router in a wheel), `--policy round_robin`;
- litellm           PyPI `litellm[proxy]`, `litellm --config cfg.yaml` (one worker process).

The peers are run from their own virtualenv (``--peers-venv``, default /tmp/peers-venv) as
separate processes; a peer that is missing or fails to start is reported with the reason and
the others are still measured. Every target gets the same unique request bodies and the same
``Authorization: Bearer`` header (frugal and LiteLLM check it; the simulator and the router
ignore it).

Load: an open-loop generator (aiohttp, in its own process) fires requests at fixed rates
(default 100, 300, 500 requests/s, 20 s each) whatever the answers do; latency is counted from
each request's *scheduled* time, so a target that falls behind shows it as latency (no
coordinated omission). The rates are interleaved over the targets (rate 1: every target, rate
2: every target, ...) so slow drifts of background load spread evenly. Then one streaming run
(time to the first body byte, TTFT, and to the last) and one closed-loop run (``--concurrency``
clients back to back) for the highest throughput. The generator, the targets and the simulator
share this machine's cores: the proxy competes with both for the CPU.

Usage: .venv/bin/python bench/bench_gateway_overhead.py [--duration 20] [--rates 100,300,500]
       [--targets direct,frugal,frugal+exact,vllm-router,litellm] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
API_KEY = "sk-bench-0123456789abcdef0123456789abcdef"
SIM_MODEL = "sim"
POLICY_MODEL = "chat"
ANSWER_TOKENS = 16
ALL_TARGETS = ["direct", "frugal", "frugal+exact", "aiohttp-floor", "vllm-router", "litellm"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the load generator (runs in its own process: `--loadgen SPEC`) -------------------------


def _body(i: int, tag: str, model: str, stream: bool) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "user", "content": f"Bench question {tag}-{i}: what is my card limit?"}
        ],
        "max_tokens": ANSWER_TOKENS,
        "temperature": 0,
    }
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def _loadgen(spec: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    url, model, tag = spec["url"], spec["model"], spec["tag"]
    stream = bool(spec.get("stream"))
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=10)
    lat: list[float] = []
    ttft: list[float] = []
    lag: list[float] = []
    errors: dict[str, int] = {}
    loop = asyncio.get_running_loop()

    async def one(session: aiohttp.ClientSession, i: int, scheduled: float) -> None:
        lag.append(loop.time() - scheduled)
        try:
            async with session.post(
                url, data=_body(i, tag, model, stream), headers=headers
            ) as resp:
                first = None
                async for _chunk in resp.content.iter_any():
                    if first is None:
                        first = loop.time()
                end = loop.time()
                if resp.status != 200:
                    errors[str(resp.status)] = errors.get(str(resp.status), 0) + 1
                    return
            lat.append(end - scheduled)
            ttft.append((first or end) - scheduled)
        except Exception as err:  # counted, never fatal: the run goes on
            errors[type(err).__name__] = errors.get(type(err).__name__, 0) + 1

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if spec["mode"] == "open":
            rate, duration = float(spec["rate"]), float(spec["duration"])
            n = int(rate * duration)
            tasks = []
            start = loop.time() + 0.05
            for i in range(n):
                scheduled = start + i / rate
                delay = scheduled - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(session, i, scheduled)))
            await asyncio.gather(*tasks)
            elapsed = max(loop.time() - start, 1e-9)
            sent = n
        else:  # closed loop: `concurrency` clients back to back for `duration`
            concurrency, duration = int(spec["concurrency"]), float(spec["duration"])
            start = loop.time()
            stop_at = start + duration
            counter = iter(range(10**9))

            async def client() -> None:
                while loop.time() < stop_at:
                    await one(session, next(counter), loop.time())

            await asyncio.gather(*(client() for _ in range(concurrency)))
            elapsed = loop.time() - start
            sent = len(lat) + sum(errors.values())
    return {
        "sent": sent,
        "ok": len(lat),
        "errors": errors,
        "elapsed": elapsed,
        "achieved_rps": len(lat) / elapsed,
        "p50_ms": _pct(lat, 50) * 1000,
        "p90_ms": _pct(lat, 90) * 1000,
        "p99_ms": _pct(lat, 99) * 1000,
        "max_ms": (max(lat) if lat else float("nan")) * 1000,
        "ttft_p50_ms": _pct(ttft, 50) * 1000,
        "ttft_p99_ms": _pct(ttft, 99) * 1000,
        "lag_p99_ms": _pct(lag, 99) * 1000,
    }


def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    """One load run in a fresh generator process."""
    proc = subprocess.run(
        [sys.executable, __file__, "--loadgen", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
        timeout=float(spec["duration"]) + 120,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the aiohttp floor: the least an aiohttp proxy does (runs as `--floor-proxy PORT URL`) ---


async def _floor_proxy(port: int, upstream: str) -> None:
    import aiohttp
    from aiohttp import web

    session: aiohttp.ClientSession | None = None

    async def handle(request: web.Request) -> web.StreamResponse:
        assert session is not None
        body = json.loads(await request.read())
        body["model"] = SIM_MODEL
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        async with session.post(
            f"{upstream}/v1/chat/completions", data=data, headers=headers
        ) as up:
            if not body.get("stream"):
                payload = await up.read()
                return web.Response(body=payload, status=up.status, content_type="application/json")
            out = web.StreamResponse(
                status=up.status, headers={"Content-Type": "text/event-stream"}
            )
            await out.prepare(request)
            async for chunk in up.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
            return out

    async def start(app: web.Application) -> None:
        nonlocal session
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def stop(app: web.Application) -> None:
        if session is not None:
            await session.close()

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


# --- CPU accounting -------------------------------------------------------------------------


def _tree(pid: int) -> list[int]:
    """pid and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by a process tree."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


# --- the targets ----------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    url: str = ""
    model: str = SIM_MODEL
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    problem: str | None = None
    saturated_at: int | None = None
    version: str = ""
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.Popen(
        cmd,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        start_new_session=True,  # its own process group: stopped whole, and only it
    )


def wait_ready(target: Target, timeout: float) -> None:
    """Until one chat completion through the target answers 200 (or the process dies)."""
    body = _body(0, "ready", target.model, False)
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if target.proc is not None and target.proc.poll() is not None:
            tail = target.log.read_text(errors="replace")[-1500:] if target.log else ""
            raise RuntimeError(f"exited with {target.proc.returncode}: {tail}")
        req = urllib.request.Request(
            target.url,
            data=body,
            headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError) as err:
            last = str(err)
        time.sleep(0.5)
    raise RuntimeError(f"not ready after {timeout:.0f} s ({last})")


def frugal_config(sim_url: str, exact_cache: bool) -> dict[str, Any]:
    policies: list[dict[str, Any]] = [
        {
            "apiVersion": "frugal.dev/v1alpha1",
            "kind": "RoutingPolicy",
            "metadata": {"name": "chat", "namespace": "bench"},
            "spec": {
                "modelName": POLICY_MODEL,
                "tiers": [{"name": "small", "endpointRef": {"name": "sim"}, "weight": 100}],
            },
        }
    ]
    if exact_cache:
        policies.append(
            {
                "apiVersion": "frugal.dev/v1alpha1",
                "kind": "CachePolicy",
                "metadata": {"name": "chat-cache", "namespace": "bench"},
                "spec": {
                    "targetRef": {"kind": "RoutingPolicy", "name": "chat"},
                    "exact": {"enabled": True, "ttl": "1h"},
                    "semantic": {"enabled": False},
                    "backend": {"type": "memory"},
                },
            }
        )
    return {
        "namespace": "bench",
        "auth": {"required": True},
        "tenants": [{"name": "bench", "apiKeys": [API_KEY], "cost": {"team": "perf"}}],
        "upstreams": {
            "sim": {
                "url": sim_url,
                "servedName": SIM_MODEL,
                "pricePerHour": 1.0,
                "tokensPerSecond": 1000,
            }
        },
        "policies": policies,
    }


def start_target(name: str, sim_url: str, work: Path, peers: Path) -> Target:
    import yaml

    port = free_port()
    target = Target(name, url=f"http://127.0.0.1:{port}/v1/chat/completions")
    target.log = work / f"{name}.log"
    try:
        if name.startswith("frugal"):
            cfg = work / f"{name}.yaml"
            cfg.write_text(yaml.safe_dump(frugal_config(sim_url, name == "frugal+exact")))
            target.model = POLICY_MODEL
            cmd = [
                sys.executable,
                "-m",
                "frugal.gateway.cli",
                "serve",
                "--config",
                str(cfg),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "WARNING",
            ]
            target.proc = spawn(cmd, target.log)
            target.version = "frugal (this tree), aiohttp " + _version(sys.executable, "aiohttp")
            wait_ready(target, 60)
        elif name == "aiohttp-floor":
            target.model = POLICY_MODEL
            cmd = [sys.executable, __file__, "--floor-proxy", f"{port} {sim_url}"]
            target.proc = spawn(cmd, target.log)
            target.version = "aiohttp " + _version(sys.executable, "aiohttp")
            wait_ready(target, 30)
        elif name == "vllm-router":
            exe = peers / "bin" / "vllm-router"
            if not exe.exists():
                raise RuntimeError(f"{exe} not found (pip install vllm-router into {peers})")
            cmd = [
                str(exe),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--worker-urls",
                sim_url,
                "--policy",
                "round_robin",
                "--log-level",
                "warning",
            ]
            target.proc = spawn(cmd, target.log)
            target.version = "vllm-router " + _version(str(peers / "bin" / "python"), "vllm-router")
            wait_ready(target, 120)
        elif name == "litellm":
            exe = peers / "bin" / "litellm"
            if not exe.exists():
                raise RuntimeError(f"{exe} not found (pip install 'litellm[proxy]' into {peers})")
            cfg = work / "litellm.yaml"
            cfg.write_text(
                yaml.safe_dump(
                    {
                        "model_list": [
                            {
                                "model_name": SIM_MODEL,
                                "litellm_params": {
                                    "model": f"hosted_vllm/{SIM_MODEL}",
                                    "api_base": f"{sim_url}/v1",
                                    "api_key": "none",
                                },
                            }
                        ],
                        "litellm_settings": {"telemetry": False, "drop_params": True},
                        "general_settings": {"master_key": API_KEY},
                    }
                )
            )
            cmd = [str(exe), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port)]
            env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
            target.proc = spawn(cmd, target.log, env=env, cwd=work)
            target.version = "litellm " + _version(str(peers / "bin" / "python"), "litellm")
            wait_ready(target, 180)
        else:
            raise ValueError(f"unknown target {name}")
    except Exception as err:
        target.problem = str(err).strip().replace("\n", " ")[:400]
        target.stop()
    return target


def _version(python: str, dist: str) -> str:
    proc = subprocess.run(
        [python, "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() or "?"


# --- the run --------------------------------------------------------------------------------


def measure(target: Target, key: str, spec: dict[str, Any], cpu_pid: int | None) -> None:
    before = cpu_seconds(cpu_pid) if cpu_pid else 0.0
    result = run_load(
        {**spec, "url": target.url, "model": target.model, "tag": f"{key}-{time.time_ns()}"}
    )
    if cpu_pid:
        used = cpu_seconds(cpu_pid) - before
        result["cpu_pct"] = 100 * used / result["elapsed"]
        result["cpu_ms_per_req"] = 1000 * used / max(result["ok"], 1)
    target.results[key] = result
    errs = sum(result["errors"].values())
    print(
        f"  {target.name:13s} {key:12s} {result['achieved_rps']:7.1f} rps  "
        f"p50 {result['p50_ms']:7.2f} ms  p99 {result['p99_ms']:7.2f} ms  errors {errs}",
        flush=True,
    )


def phases(live: list[Target], args: argparse.Namespace, sim_pid: int) -> None:
    """Warm-up, the open-loop rates (interleaved over targets), streaming, closed loop."""

    def pid_of(t: Target) -> int:
        return t.proc.pid if t.proc is not None else sim_pid

    print("warm-up", flush=True)
    for t in live:
        warm = {"mode": "open", "rate": 100, "duration": 3, "tag": "warm"}
        run_load({**warm, "url": t.url, "model": t.model})
    for rate in args.rates:
        print(f"open loop, {rate} requests/s for {args.duration:g} s", flush=True)
        for t in live:
            if t.saturated_at is not None:
                print(f"  {t.name:13s} skipped: could not sustain {t.saturated_at} rps")
                continue
            measure(
                t,
                f"open-{rate}",
                {"mode": "open", "rate": rate, "duration": args.duration},
                pid_of(t),
            )
            r = t.results[f"open-{rate}"]
            if r["achieved_rps"] < 0.9 * rate or r["p99_ms"] > 2000:
                t.saturated_at = rate  # higher rates would only queue up and time out
    if args.stream_rate:
        print(f"streaming, {args.stream_rate:g} requests/s for {args.stream_duration:g} s")
        for t in live:
            spec = {"mode": "open", "rate": args.stream_rate, "duration": args.stream_duration}
            measure(t, "stream", {**spec, "stream": True}, pid_of(t))
    if args.concurrency:
        print(f"closed loop, {args.concurrency} clients for {args.closed_duration:g} s")
        for t in live:
            spec = {
                "mode": "closed",
                "concurrency": args.concurrency,
                "duration": args.closed_duration,
            }
            measure(t, "closed", spec, pid_of(t))


def run(args: argparse.Namespace) -> tuple[list[Target], dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="bench-gw-"))
    peers = Path(args.peers_venv)
    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    sim_log = work / "sim.log"
    sim = spawn(
        [
            sys.executable,
            "-m",
            "frugal.enginesim",
            "--port",
            str(sim_port),
            "--model",
            SIM_MODEL,
            "--tokens-per-second",
            "0",
            "--ttft-seconds",
            "0",
            "--answer-tokens",
            str(ANSWER_TOKENS),
            "--max-num-seqs",
            "1024",
            "--log-level",
            "WARNING",
        ],
        sim_log,
    )
    targets: list[Target] = []
    meta: dict[str, Any] = {"load_before": os.getloadavg()}
    try:
        direct = Target("direct", url=f"{sim_url}/v1/chat/completions", proc=None, log=sim_log)
        wait_ready(direct, 30)
        for name in args.targets:
            if name == "direct":
                targets.append(direct)
                continue
            t0 = time.monotonic()
            target = start_target(name, sim_url, work, peers)
            status = f"problem: {target.problem}" if target.problem else "ready"
            print(f"{name}: {status} ({time.monotonic() - t0:.0f} s)", flush=True)
            targets.append(target)
        live = [t for t in targets if t.problem is None]
        phases(live, args, sim.pid)
        meta["sim_cpu_s"] = cpu_seconds(sim.pid)
    finally:
        for t in targets:
            t.stop()
        sim.terminate()
        sim.wait(timeout=10)
        meta["load_after"] = os.getloadavg()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs kept in {work}")
    return targets, meta


def tables(targets: list[Target], args: argparse.Namespace) -> str:
    base = next((t for t in targets if t.name == "direct"), None)
    out = []
    for rate in args.rates:
        key = f"open-{rate}"
        out.append(
            f"\nOpen loop at {rate} requests/s for {args.duration:g} s (latency from the "
            "scheduled send time; overhead = target − direct at the same percentile):\n"
        )
        out.append(
            "| target | achieved rps | p50 ms | p99 ms | overhead p50 ms | "
            "overhead p99 ms | errors | proxy CPU ms/req |"
        )
        out.append("|---|---|---|---|---|---|---|---|")
        for t in targets:
            if not t.problem and key not in t.results and t.saturated_at:
                out.append(f"| {t.name} | not run: saturated at {t.saturated_at} rps |||||||")
            if t.problem or key not in t.results:
                continue
            r = t.results[key]
            b = base.results.get(key) if base else None
            o50 = f"{r['p50_ms'] - b['p50_ms']:+.2f}" if b and t is not base else "—"
            o99 = f"{r['p99_ms'] - b['p99_ms']:+.2f}" if b and t is not base else "—"
            cpu = "—" if t is base else f"{r.get('cpu_ms_per_req', float('nan')):.2f}"
            out.append(
                f"| {t.name} | {r['achieved_rps']:.1f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                f"{o50} | {o99} | {sum(r['errors'].values())} | {cpu} |"
            )
    if args.stream_rate:
        out.append(
            f"\nStreaming at {args.stream_rate} requests/s for {args.stream_duration:g} s "
            f"({ANSWER_TOKENS} tokens, all emitted at once by the simulator):\n"
        )
        out.append(
            "| target | achieved rps | TTFT p50 ms | TTFT p99 ms | last byte p50 ms | "
            "last byte p99 ms | errors |"
        )
        out.append("|---|---|---|---|---|---|---|")
        for t in targets:
            r = t.results.get("stream")
            if t.problem or r is None:
                continue
            out.append(
                f"| {t.name} | {r['achieved_rps']:.1f} | {r['ttft_p50_ms']:.2f} | "
                f"{r['ttft_p99_ms']:.2f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                f"{sum(r['errors'].values())} |"
            )
    if args.concurrency:
        out.append(
            f"\nClosed loop, {args.concurrency} concurrent clients for "
            f"{args.closed_duration:g} s (highest throughput on this machine):\n"
        )
        out.append(
            "| target | requests/s | p50 ms | p99 ms | errors "
            "| proxy CPU % of one core (direct: the simulator) |"
        )
        out.append("|---|---|---|---|---|---|")
        for t in targets:
            r = t.results.get("closed")
            if t.problem or r is None:
                continue
            out.append(
                f"| {t.name} | {r['achieved_rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                f"{sum(r['errors'].values())} | {r.get('cpu_pct', float('nan')):.0f} |"
            )
    problems = [t for t in targets if t.problem]
    if problems:
        out.append("\nNot measured:\n")
        out.extend(f"- {t.name}: {t.problem}" for t in problems)
    out.append("\nVersions: " + "; ".join(f"{t.name}: {t.version}" for t in targets if t.version))
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per open-loop rate")
    parser.add_argument("--rates", default="100,300,500")
    parser.add_argument("--targets", default=",".join(ALL_TARGETS))
    parser.add_argument("--stream-rate", type=float, default=100.0, help="0 skips streaming")
    parser.add_argument("--stream-duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32, help="0 skips the closed loop")
    parser.add_argument("--closed-duration", type=float, default=10.0)
    parser.add_argument("--peers-venv", default=os.environ.get("PEERS_VENV", "/tmp/peers-venv"))
    parser.add_argument("--json", help="write the raw results here")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, configs)")
    parser.add_argument("--loadgen", help=argparse.SUPPRESS)
    parser.add_argument("--floor-proxy", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen:
        print(json.dumps(asyncio.run(_loadgen(json.loads(args.loadgen)))))
        return
    if args.floor_proxy:
        port, upstream = args.floor_proxy.split()
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_floor_proxy(int(port), upstream))
        return
    args.rates = [int(r) for r in args.rates.split(",") if r]
    args.targets = [t for t in args.targets.split(",") if t]
    started = time.monotonic()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    targets, meta = run(args)
    print(tables(targets, args))
    print(f"\nload average before {meta['load_before']}, after {meta['load_after']}")
    print(f"(total {time.monotonic() - started:.0f} s)")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "meta": meta,
                    "targets": {
                        t.name: {"problem": t.problem, "version": t.version, "results": t.results}
                        for t in targets
                    },
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
