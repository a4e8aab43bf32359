"""``frugal gateway serve`` as a real process, in front of an engine-simulator process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from frugal.gateway.testing import free_port, routing_policy
from support.badupstream import BadUpstream


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", *args], stdout=log.open("w"), stderr=subprocess.STDOUT
    )


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"process exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            assert time.monotonic() < deadline, f"{url} never answered"
            time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = start(
        ["frugal.enginesim", "--port", str(port), "--model", "sim", "--answer-tokens", "6",
         "--tokens-per-second", "0", "--ttft-seconds", "0"],
        tmp_path / "engine.log",
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def post(url: str, body: dict, key: str) -> tuple[int, dict, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.load(err)


def test_cli_serves_reloads_on_sighup_and_exposes_metrics(tmp_path: Path, engine: str) -> None:
    config = {
        "auth": {"required": True},
        "reloadIntervalSeconds": 3600,  # only SIGHUP reloads in this test
        "tenants": [{"name": "t", "apiKeys": [{"env": "FRUGAL_TEST_KEY"}]}],
        "upstreams": {"sim": {"url": engine, "servedName": "sim"}},
        "policies": [
            routing_policy(
                "chat", "chat", [{"name": "a", "endpointRef": {"name": "sim"}, "weight": 100}]
            )
        ],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    log = tmp_path / "gateway.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "frugal.gateway.cli", "serve", "--config", str(path),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "FRUGAL_TEST_KEY": "sk-secret-key"},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz", proc)
        prompt = "my secret prompt text"
        body = {"model": "chat", "messages": [{"role": "user", "content": prompt}]}
        status, headers, answer = post(f"{base}/v1/chat/completions", body, "sk-secret-key")
        assert status == 200
        assert headers["x-frugal-tier"] == "a"
        assert answer["usage"]["completion_tokens"] == 6
        assert post(f"{base}/v1/chat/completions", body, "wrong")[0] == 401

        config["policies"][0]["spec"]["tiers"][0]["name"] = "b"
        path.write_text(yaml.safe_dump(config))
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while True:
            with urllib.request.urlopen(f"{base}/healthz", timeout=5) as resp:
                if json.load(resp)["generation"] == 2:
                    break
            assert time.monotonic() < deadline, "SIGHUP did not reload"
            time.sleep(0.1)
        status, headers, _ = post(f"{base}/v1/chat/completions", body, "sk-secret-key")
        assert (status, headers["x-frugal-tier"]) == (200, "b")
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
            metrics = resp.read().decode()
        assert re.search(r'frugal_gateway_requests_total\{[^}]*tier="b"[^}]*\} 1\.0', metrics)
    finally:
        stop(proc)
    text = log.read_text()
    assert "listening on http://127.0.0.1" in text
    assert prompt not in text  # prompts are never logged
    assert "sk-secret-key" not in text


def test_cli_refuses_a_broken_config(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("upstreams: {x: {servedName: x}}\n")
    out = subprocess.run(
        [sys.executable, "-m", "frugal.gateway.cli", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "exactly one of url or urls" in out.stderr


def test_a_client_that_hangs_up_frees_its_upstream_call(tmp_path: Path) -> None:
    """In the served process (not only under aiohttp's test server, which always cancels): a
    client that disconnects while its upstream hangs cancels the request at once — the gateway
    drops the upstream call and its in-flight slot instead of waiting out the read timeout."""

    async def test() -> None:
        bad = await BadUpstream().start()
        config = {
            "auth": {"required": False},
            "upstreams": {"bad": {"url": bad.url("hang"), "servedName": "bad"}},
            "policies": [
                routing_policy(
                    "chat", "chat", [{"name": "a", "endpointRef": {"name": "bad"}, "weight": 100}]
                )
            ],
            "limits": {"readTimeoutSeconds": 300},
        }
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump(config))
        port = free_port()
        proc = start(
            ["frugal.gateway.cli", "serve", "--config", str(path), "--host", "127.0.0.1",
             "--port", str(port)],
            tmp_path / "gateway.log",
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as session:

                async def metric(name: str, **labels: str) -> float:
                    async with session.get(f"{base}/metrics") as resp:
                        text = await resp.text()
                    want = set(labels.items())
                    return sum(
                        s.value
                        for family in text_string_to_metric_families(text)
                        for s in family.samples
                        if s.name == name and want <= set(s.labels.items())
                    )

                async def until(check: Callable[[], Awaitable[bool]]) -> None:
                    deadline = time.monotonic() + 20
                    while not await check():
                        assert time.monotonic() < deadline, "timed out"
                        await asyncio.sleep(0.05)

                async def up() -> bool:
                    assert proc.poll() is None, "the gateway exited"
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.get(f"{base}/healthz") as resp:
                            return resp.status == 200
                    return False

                await until(up)
                body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
                hung = [
                    asyncio.create_task(session.post(f"{base}/v1/chat/completions", json=body))
                    for _ in range(3)
                ]

                async def all_hung() -> bool:
                    return bad.open == 3 and await metric("frugal_gateway_in_flight") == 3

                await until(all_hung)
                for task in hung:
                    task.cancel()
                await asyncio.gather(*hung, return_exceptions=True)

                async def freed() -> bool:
                    return bad.open == 0 and await metric("frugal_gateway_in_flight") == 0

                await until(freed)
                assert await metric("frugal_gateway_requests_total", code="499") == 3
        finally:
            stop(proc)
            await bad.stop()

    asyncio.run(asyncio.wait_for(test(), 60))
