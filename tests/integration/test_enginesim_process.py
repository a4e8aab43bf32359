"""``python -m frugal.enginesim`` as a real process on a real socket (no cluster needed)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest


@pytest.fixture
def simulator() -> Iterator[str]:
    """Start the simulator on a free port; yield its base URL."""
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "frugal.enginesim", "--port", "0", "--model", "proc-model"),
            *("--tokens-per-second", "200", "--answer-tokens", "20", "--ttft-seconds", "0.01"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line, f"simulator exited with {proc.wait()}"
            if match := re.search(r"http://\S+", line):
                url = match.group(0)
        assert url, "the simulator never said where it listens"
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stderr.close()


def post(url: str, body: dict) -> urllib.request.Request:
    return urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )


def test_serves_health_chat_stream_and_metrics(simulator: str) -> None:
    with urllib.request.urlopen(f"{simulator}/health", timeout=10) as resp:
        assert resp.status == 200
    chat = {"model": "proc-model", "messages": [{"role": "user", "content": "hello"}]}
    with urllib.request.urlopen(post(f"{simulator}/v1/chat/completions", chat), timeout=10) as r:
        body = json.load(r)
    assert body["usage"]["completion_tokens"] == 20
    stream = post(f"{simulator}/v1/chat/completions", {**chat, "stream": True})
    with urllib.request.urlopen(stream, timeout=10) as resp:
        events = [line.decode().strip() for line in resp if line.startswith(b"data: ")]
    assert events[-1] == "data: [DONE]"
    deltas = [json.loads(e.removeprefix("data: "))["choices"][0]["delta"] for e in events[:-1]]
    assert "".join(d.get("content", "") for d in deltas) == body["choices"][0]["message"]["content"]
    with urllib.request.urlopen(f"{simulator}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    assert 'vllm:generation_tokens_total{engine="0",model_name="proc-model"} 40.0' in text
