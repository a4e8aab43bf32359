"""The request pipeline: authenticate, bound, parse, cache, classify, route, relay, meter.

One request takes the snapshot current at its arrival and keeps it to the end. Routing tries
the tier picked by weight, then the fallback order, moving on only for failures the policy's
``fallback.on`` names and only before the first byte reached the client (a stream that has
started cannot change tiers). Streams are relayed event by event as they arrive; the text is
collected on the side (bounded) for metering, caching and shadow comparison.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from frugal.cost.model import request_cost
from frugal.gateway import cache as cachemod
from frugal.gateway import cachekeys, classify, routing, upstream
from frugal.gateway.cache import Probe
from frugal.gateway.config import Limits
from frugal.gateway.errors import GatewayError
from frugal.gateway.metering import Labels
from frugal.gateway.service import Gateway
from frugal.gateway.shadow import Reading
from frugal.gateway.snapshot import Route, Snapshot, TierRoute
from frugal.gateway.tenancy import TenantInfo, authenticate, bearer
from frugal.gateway.upstream import SseParser, StreamAccumulator, UpstreamError
from frugal.gateway.wake import UpstreamState

log = logging.getLogger("frugal.gateway")

CACHE_HEADER = "x-frugal-cache"
TIER_HEADER = "x-frugal-tier"
PATHS = {
    "chat": "/v1/chat/completions",
    "completion": "/v1/completions",
    "embedding": "/v1/embeddings",
}


class _ClientGoneError(Exception):
    """The client closed its connection while we were writing to it."""


@dataclass
class Call:
    """One request on its way through; ``labels`` grows as more is known."""

    kind: str
    started: float
    labels: Labels
    tenant: TenantInfo | None = None
    stream: bool = False
    include_usage: bool = False
    prompt: str = ""
    cls: str = ""
    body: dict[str, Any] | None = None
    route: Route | None = None
    probe: Probe | None = None
    snap: Snapshot | None = None
    metered: bool = False
    """Set once the request is counted, so a late cancellation does not count it twice."""


@dataclass
class Attempt:
    """An open 200 response from one tier; releasing it frees the tier's in-flight slot."""

    tier: TierRoute
    resp: aiohttp.ClientResponse
    state: UpstreamState


def error_response(err: GatewayError, tier: str = "none") -> web.Response:
    headers = {**err.headers(), CACHE_HEADER: "miss", TIER_HEADER: tier or "none"}
    return web.json_response(err.body(), status=err.status, headers=headers)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The body, refusing with 413 as soon as it is known to exceed ``limit`` bytes."""
    too_large = GatewayError(413, f"request body exceeds {limit} bytes", code="request_too_large")
    length = request.content_length
    if length is not None:
        if length > limit:
            raise too_large
        try:
            return await request.content.readexactly(length) if length else b""
        except asyncio.IncompleteReadError as err:
            raise GatewayError(400, "request body shorter than its Content-Length") from err
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise GatewayError(400, f"invalid JSON body: {err}", code="invalid_json") from err
    if not isinstance(body, dict):
        raise GatewayError(400, "the request body must be a JSON object", code="invalid_json")
    return body


def validate(body: dict[str, Any], kind: str) -> None:
    """Refuse requests no upstream could serve, before they cost a call."""
    if kind == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise GatewayError(400, "messages must be a non-empty list", param="messages")
        if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
            raise GatewayError(400, "every message needs a role", param="messages")
    elif kind == "completion":
        if not isinstance(body.get("prompt"), str | list):
            raise GatewayError(400, "prompt must be a string or a list", param="prompt")
    elif body.get("input") in (None, "", []):
        raise GatewayError(400, "input is required", param="input")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise GatewayError(400, "stream must be true or false", param="stream")


def upstream_body(body: dict[str, Any], model: str, call: Call) -> dict[str, Any]:
    """The body sent upstream: its model name, and usage asked for in streams (for metering;
    the usage chunk is dropped again if the client did not ask for it)."""
    out = {**body, "model": model}
    if call.stream:
        out["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return out


def _tokens(usage: Any, prompt: str, answer_chars: int) -> tuple[int, int]:
    """(in, out) tokens from usage, else estimated as characters / 4."""
    if isinstance(usage, dict):
        tin, tout = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if isinstance(tin, int) and isinstance(tout, int):
            return tin, tout
    return math.ceil(len(prompt) / 4), math.ceil(answer_chars / 4)


class Pipeline:
    """Request handlers bound to one :class:`Gateway`."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self._timeouts: tuple[Limits, aiohttp.ClientTimeout] | None = None

    def _timeout(self, limits: Limits) -> aiohttp.ClientTimeout:
        """The upstream timeouts of a configuration, built once per configuration rather than
        once per request (an attrs object and its validation on every call)."""
        cached = self._timeouts
        if cached is None or cached[0] is not limits:
            timeout = aiohttp.ClientTimeout(
                total=None,
                sock_connect=limits.connect_timeout_seconds,
                sock_read=limits.read_timeout_seconds,
            )
            cached = self._timeouts = (limits, timeout)
        return cached[1]

    # --- entry -----------------------------------------------------------------------------------

    async def handle(self, request: web.Request, kind: str) -> web.StreamResponse:
        gw = self.gw
        snap = gw.snapshot
        call = Call(kind=kind, started=gw.clock(), labels=Labels(), snap=snap)
        try:
            call.tenant = authenticate(
                bearer(request.headers), snap.keys, snap.auth_required, snap.anonymous
            )
            t = call.tenant
            call.labels = Labels(tenant=t.name, team=t.team, project=t.project, env=t.env)
            raw = await read_body(request, snap.limits.max_body_bytes)
            gw.limiter.check(t.name, t.rate_limit or snap.limits.rate_limit)
            body = parse_json(raw)
            route = snap.resolve(body.get("model"))
            call.route = route
            call.labels = Labels(
                route.policy, route.namespace, "", "", t.name, t.team, t.project, t.env
            )
            validate(body, kind)
            call.body = body
            call.stream = kind != "embedding" and body.get("stream") is True
            options = body.get("stream_options")
            call.include_usage = (
                call.stream and isinstance(options, dict) and bool(options.get("include_usage"))
            )
            return await self._serve(request, snap, route, body, call)
        except asyncio.CancelledError:
            if not call.metered:  # the client left while we waited for an upstream
                gw.metrics.request(
                    call.labels, cache="miss", code=499, duration=gw.clock() - call.started
                )
            raise
        except GatewayError as err:
            if err.status in {401, 413, 429} and not call.labels.policy:
                gw.metrics.rejected.labels(str(err.code), call.labels.tenant).inc()
            gw.metrics.request(
                call.labels, cache="miss", code=err.status, duration=gw.clock() - call.started
            )
            return error_response(err, call.labels.tier)

    async def models(self, request: web.Request) -> web.Response:
        snap = self.gw.snapshot
        try:
            authenticate(bearer(request.headers), snap.keys, snap.auth_required, snap.anonymous)
        except GatewayError as err:
            return error_response(err)
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": route.policy or "frugal"}
            for name, route in sorted(snap.routes.items())
        ]
        return web.json_response({"object": "list", "data": data})

    # --- cache and routing -------------------------------------------------------------------

    async def _serve(
        self,
        request: web.Request,
        snap: Snapshot,
        route: Route,
        body: dict[str, Any],
        call: Call,
    ) -> web.StreamResponse:
        assert call.tenant is not None
        if call.kind != "embedding":
            call.prompt = classify.prompt_text(body, call.kind)
            cache = route.cache
            if cache is not None and cache.excluded(body, call.prompt) is None:
                probe = await cache.lookup(route.model_name, call.kind, body, call.tenant.name)
                call.probe = probe
                if probe.hit is not None:
                    return await self._serve_hit(request, call)
            if any(t.match for t in route.tiers):
                call.cls = await self._classify(route, body, call)
                indices = classify.allowed([t.match for t in route.tiers], call.cls)
                candidates = [route.tiers[i].name for i in indices]
            else:  # no tier is reserved for a class: the class cannot change the pick
                candidates = route.names
        else:
            candidates = route.names
        first = routing.pick(candidates, route.weights, self.gw.rng)
        order = routing.attempt_order(first, route.names, route.fallback_order)
        affinity = None
        if route.cache is not None and route.cache.settings.affinity:
            affinity = routing.prefix_key(call.prompt, route.cache.settings.min_prefix_tokens)

        previous: tuple[str, str] | None = None
        base = call.labels
        for i, name in enumerate(order):
            tier = route.tier(name)
            call.labels = Labels(
                base.policy,
                base.namespace,
                name,
                tier.upstream.endpoint,
                base.tenant,
                base.team,
                base.project,
                base.env,
            )
            if previous is not None:
                self.gw.metrics.fallbacks.labels(
                    route.policy, route.namespace, previous[0], name, previous[1]
                ).inc()
            try:
                attempt = await self._open(snap, tier, call, affinity)
                if call.stream:
                    return await self._relay_stream(request, attempt, call)
                return await self._relay_json(attempt, call)
            except UpstreamError as failure:
                if failure.reason in route.fallback_on and i + 1 < len(order):
                    previous = (name, failure.reason)
                    log.debug("tier %s failed (%s); falling back", name, failure.reason)
                    continue
                raise failure.error from failure
        raise AssertionError("unreachable: the attempt order is never empty")

    async def _classify(self, route: Route, body: dict[str, Any], call: Call) -> str:
        """The request's class (rules, heuristics, nearest labelled example)."""
        found = None
        if route.examples is not None:
            question = cachekeys.semantic_query(call.kind, body)
            found = await route.examples.nearest(question[0] if question else call.prompt)
        return classify.classify(
            route.classifier, classify.features(body, call.kind), lambda _: found
        )

    async def _open(
        self,
        snap: Snapshot,
        tier: TierRoute,
        call: Call,
        affinity: str | None,
    ) -> Attempt:
        """An open 200 response from the tier (holding while it wakes), or UpstreamError."""
        gw = self.gw
        up = tier.upstream
        state = gw.waker.state(up)
        deadline = gw.clock() + up.cold_start_budget
        limits = snap.limits
        timeout = self._timeout(limits)
        while True:
            if state.asleep and not up.external:
                try:
                    awake = await gw.waker.hold(
                        up,
                        deadline,
                        limits.wake_queue,
                        gw.wake_callback(),
                        limits.probe_interval_seconds,
                    )
                except GatewayError as err:
                    raise UpstreamError("overload", err) from err
                if not awake:
                    raise UpstreamError(
                        "scaledToZero",
                        GatewayError(
                            503,
                            f"tier {tier.name} did not wake within its cold-start budget",
                            code="cold_start_timeout",
                            retry_after=max(1.0, min(up.cold_start_budget, 60.0)),
                        ),
                    )
            if state.in_flight >= up.max_in_flight:
                raise UpstreamError(
                    "overload",
                    GatewayError(
                        503, f"tier {tier.name} is at its in-flight limit", retry_after=1.0
                    ),
                )
            url = routing.choose_replica(up.urls, affinity, gw.rng) + PATHS[call.kind]
            state.in_flight += 1
            try:
                resp = await upstream.post(
                    gw.session,
                    url,
                    upstream_body(call.body or {}, up.model, call),
                    tier=tier.name,
                    api_key=up.api_key,
                    timeout=timeout,
                    refused_means_asleep=not up.external,
                )
            except UpstreamError as failure:
                state.in_flight -= 1
                if failure.reason == "scaledToZero" and gw.clock() < deadline:
                    state.asleep = True  # nothing was sent: holding and retrying is safe
                    continue
                raise
            except asyncio.CancelledError:
                state.in_flight -= 1
                raise
            return Attempt(tier, resp, state)

    # --- answers ---------------------------------------------------------------------------------

    def _headers(self, cache: str, tier: str, call: Call) -> dict[str, str]:
        headers = {CACHE_HEADER: cache, TIER_HEADER: tier}
        if call.cls:
            headers["x-frugal-class"] = call.cls
        return headers

    def _cost(self, tier: TierRoute, tin: int, tout: int) -> float:
        up = tier.upstream
        return request_cost(tin, tout, up.price_in_per_1m, up.price_out_per_1m).total

    async def _relay_json(self, attempt: Attempt, call: Call) -> web.Response:
        gw, tier, route = self.gw, attempt.tier, call.route
        assert route is not None
        try:
            payload = await attempt.resp.read()
        except (aiohttp.ClientError, TimeoutError) as err:
            raise UpstreamError("error", GatewayError(502, f"tier {tier.name} broke off")) from err
        finally:
            attempt.resp.release()
            attempt.state.in_flight -= 1
        try:
            data = json.loads(payload)
            assert isinstance(data, dict)
        except (ValueError, AssertionError) as err:
            raise UpstreamError(
                "error", GatewayError(502, f"tier {tier.name} sent bad JSON")
            ) from err
        answer = None
        if call.kind == "embedding":
            tin, tout = int((data.get("usage") or {}).get("prompt_tokens") or 0), 0
        else:
            answer = upstream.answer_text(data, call.kind == "chat")
            tin, tout = _tokens(data.get("usage"), call.prompt, len(answer or ""))
        cost = self._cost(tier, tin, tout)
        if answer is not None:
            given = gw.distrust.wall()
            await self._remember(call, tier, data, cost, (tin, tout), given=given)
            self._maybe_shadow(route, tier, answer, call, given)
        elapsed = gw.clock() - call.started
        gw.metrics.request(
            call.labels,
            cache="miss",
            code=200,
            tokens_in=tin,
            tokens_out=tout,
            cost_usd=cost,
            duration=elapsed,
            ttft=elapsed,
        )
        return web.Response(
            body=payload,
            content_type="application/json",
            headers=self._headers("miss", tier.name, call),
        )

    async def _remember(
        self,
        call: Call,
        tier: TierRoute,
        data: dict[str, Any],
        cost: float,
        tokens: tuple[int, int],
        *,
        given: float,
    ) -> None:
        """Store an answer in the cache, if this request looked it up; ``given`` (wall clock)
        tells lookups whether its tier was distrusted then."""
        route = call.route
        if call.probe is None or route is None or route.cache is None:
            return
        entry = {
            "body": data,
            "tier": tier.name,
            "endpoint": tier.upstream.endpoint,
            "cost": cost,
            "tokens_in": tokens[0],
            "tokens_out": tokens[1],
            "at": given,
        }
        await route.cache.save(call.probe, entry)

    async def _write(self, response: web.StreamResponse, data: bytes) -> None:
        try:
            await response.write(data)
        except ConnectionResetError as err:
            raise _ClientGoneError from err

    def _select(
        self, events: list[bytes], acc: StreamAccumulator, call: Call, *, full: bool = False
    ) -> tuple[list[bytes], bytes | None]:
        """The events to pass on, and a ``[DONE]`` to hold back (sent after the cache write);
        a usage-only chunk the client did not ask for is dropped."""
        out: list[bytes] = []
        done: bytes | None = None
        for event in events:
            usage_only = acc.observe_event(event, full=full)
            if acc.broken:
                break
            if usage_only and not call.include_usage:
                continue
            if acc.done:
                done = event
                continue
            out.append(event)
        return out, done

    async def _first_events(
        self, attempt: Attempt, parser: SseParser, acc: StreamAccumulator, call: Call
    ) -> tuple[list[bytes], bytes | None]:
        """The stream's first whole events, decoded in full before anything is sent: until
        then a silent, broken or garbled upstream is an UpstreamError the caller may still
        answer with a proper status or hand to a fallback tier."""
        name = attempt.tier.name
        resp = attempt.resp
        if resp.content_type != "text/event-stream":
            raise UpstreamError(
                "error",
                GatewayError(502, f"tier {name} answered a stream with {resp.content_type}"),
            )
        try:
            while True:
                chunk = await resp.content.readany()
                if not chunk:
                    rest = parser.rest()
                    events = [rest + b"\n\n"] if rest.strip() else []
                    break
                if events := parser.feed(chunk):
                    break
        except TimeoutError as err:
            raise UpstreamError("error", GatewayError(504, f"tier {name} timed out")) from err
        except aiohttp.ClientError as err:
            raise UpstreamError("error", GatewayError(502, f"tier {name} broke off")) from err
        # The first event is decoded in full (is this an OpenAI stream at all?); the rest of
        # the batch, often the whole answer from a fast engine, gets the cheap checks.
        head, head_done = self._select(events[:1], acc, call, full=True)
        tail, tail_done = self._select(events[1:], acc, call) if not acc.broken else ([], None)
        if acc.broken or (not chunk and not acc.done):
            raise UpstreamError("error", GatewayError(502, f"tier {name} sent a broken stream"))
        return head + tail, tail_done or head_done

    async def _pump(
        self,
        response: web.StreamResponse,
        attempt: Attempt,
        parser: SseParser,
        acc: StreamAccumulator,
        call: Call,
        *,
        pending: tuple[list[bytes], bytes | None],
    ) -> tuple[int, float | None, bytes | None]:
        """Relay events as they arrive, those of one upstream chunk in one write: (status
        code, first-byte time, held-back [DONE])."""
        first: float | None = None
        out, done = pending
        problem, eof = "", False
        try:
            while True:
                if out:
                    await self._write(response, out[0] if len(out) == 1 else b"".join(out))
                    first = first if first is not None else self.gw.clock()
                if acc.broken:
                    problem = "sent a malformed event"
                    break
                if acc.done:
                    break
                if eof:
                    problem = "ended the stream without [DONE]"
                    break
                chunk = await attempt.resp.content.readany()
                if chunk:
                    out, done = self._select(parser.feed(chunk), acc, call)
                else:
                    eof, rest = True, parser.rest()
                    out, done = self._select([rest + b"\n\n"] if rest.strip() else [], acc, call)
        except _ClientGoneError:
            return 499, first, None  # the client left; nothing more to send
        except TimeoutError:
            problem = "timed out mid-stream"
        except aiohttp.ClientError:
            problem = "broke off the stream"
        if not problem:
            return 200, first, done
        err = GatewayError(502, f"tier {attempt.tier.name} {problem}", code="upstream_stream")
        try:
            await self._write(response, f"data: {json.dumps(err.body())}\n\n".encode())
        except _ClientGoneError:
            return 499, first, None
        return 502, first, None

    async def _relay_stream(
        self, request: web.Request, attempt: Attempt, call: Call
    ) -> web.StreamResponse:
        """Events go to the client as they arrive; only ``[DONE]`` waits for the cache write.

        The response starts with the upstream's first event, so a tier that fails before that
        still gets a proper error status or a fallback."""
        gw, tier, route = self.gw, attempt.tier, call.route
        assert route is not None
        headers = {
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            **self._headers("miss", tier.name, call),
        }
        limits = call.snap.limits if call.snap else gw.config.limits
        shadowed = route.shadow_rate > 0 and route.shadow_tier not in (None, tier.name)
        acc = StreamAccumulator(
            chat=call.kind == "chat",
            cap=limits.max_cached_answer_chars,
            collect=call.probe is not None or shadowed,
        )
        parser = SseParser()
        try:
            pending = await self._first_events(attempt, parser, acc, call)
            response = web.StreamResponse(status=200, headers=headers)
            await response.prepare(request)
            code, first, done = await self._pump(
                response, attempt, parser, acc, call, pending=pending
            )
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the client disconnects: meter what was served.
            tin, tout = _tokens(acc.usage, call.prompt, acc.out_chars)
            call.metered = True
            gw.metrics.request(
                call.labels,
                cache="miss",
                code=499,
                tokens_in=tin,
                tokens_out=tout,
                cost_usd=self._cost(tier, tin, tout),
                duration=gw.clock() - call.started,
            )
            raise
        finally:
            attempt.resp.release()
            attempt.state.in_flight -= 1
        tin, tout = _tokens(acc.usage, call.prompt, acc.out_chars)
        cost = self._cost(tier, tin, tout)
        answer = acc.answer if acc.collect else None
        if code == 200 and answer is not None and acc.done:
            usage = {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout}
            data = cachemod.entry_body(call.kind, acc.model or "", answer, acc.finish_reason, usage)
            given = gw.distrust.wall()
            await self._remember(call, tier, data, cost, (tin, tout), given=given)
            self._maybe_shadow(route, tier, answer, call, given)
        if code == 200:
            try:
                await self._write(response, done or b"data: [DONE]\n\n")
                await response.write_eof()
            except _ClientGoneError:
                code = 499
        gw.metrics.request(
            call.labels,
            cache="miss",
            code=code,
            tokens_in=tin,
            tokens_out=tout,
            cost_usd=cost,
            duration=gw.clock() - call.started,
            ttft=None if first is None else first - call.started,
        )
        return response

    async def _serve_hit(self, request: web.Request, call: Call) -> web.StreamResponse:
        gw, route, probe = self.gw, call.route, call.probe
        assert route is not None
        assert probe is not None
        entry = probe.hit
        assert entry is not None
        origin = str(entry.get("tier", ""))
        body = cachemod.fresh(entry["body"], call.kind)
        headers = self._headers(probe.hit_kind, origin, call)
        if probe.hit_kind == "semantic":
            headers["x-frugal-cache-score"] = f"{probe.score:.4f}"
        labels = call.labels._replace(tier="", endpoint="")
        cost_labels = labels.cost()
        gw.metrics.cache_hits.labels(
            probe.hit_kind, route.policy, route.namespace, origin, *cost_labels.values()
        ).inc()
        gw.metrics.cache_saved.labels(
            route.policy, route.namespace, origin, *cost_labels.values()
        ).inc(float(entry.get("cost") or 0.0))
        if call.stream:
            response: web.StreamResponse = web.StreamResponse(
                status=200,
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    **headers,
                },
            )
            code = 200
            try:
                await response.prepare(request)
                for event in cachemod.stream_events(body, call.kind, call.include_usage):
                    await self._write(response, event)
                await response.write_eof()
            except _ClientGoneError:
                code = 499
        else:
            response = web.json_response(body, headers=headers)
            code = 200
        elapsed = gw.clock() - call.started
        gw.metrics.request(labels, cache=probe.hit_kind, code=code, duration=elapsed, ttft=elapsed)
        if probe.hit_kind == "semantic":
            self._maybe_verify(route, entry, call)
        return response

    # --- shadow ----------------------------------------------------------------------------------

    def _maybe_shadow(
        self, route: Route, tier: TierRoute, answer: str, call: Call, given: float
    ) -> None:
        """Sample this answer (given at ``given``, wall clock) for comparison with the
        reference tier's, in the background; the new quality reading goes to the cache's
        distrust spans when the policy has a quality objective."""
        ref_name = route.shadow_tier
        if not ref_name or route.shadow_rate <= 0 or ref_name == tier.name or call.body is None:
            return
        if self.gw.rng.random() >= route.shadow_rate:
            return
        reference, body, metrics = route.tier(ref_name), call.body, self.gw.metrics

        def meter(usd: float) -> None:
            metrics.shadow_cost.labels(route.policy, route.namespace, ref_name).inc(usd)

        observe = None
        book = route.cache.distrust if route.cache is not None else None
        threshold, name = route.quality_bar, tier.name
        if book is not None and threshold is not None:

            def observe(reading: Reading) -> None:
                book.observe(name, reading, threshold)

        self.gw.shadow.submit(
            route.policy,
            route.namespace,
            tier.name,
            answer,
            lambda: self._side_answer(reference, body, call, meter),
            at=given,
            observe=observe,
        )

    def _maybe_verify(self, route: Route, entry: dict[str, Any], call: Call) -> None:
        """Sample a semantic hit for verification against a fresh answer of its origin tier."""
        cache = route.cache
        snap = call.snap or self.gw.snapshot
        rate = snap.limits.false_hit_sample_rate
        if cache is None or cache.budget is None or rate <= 0 or call.body is None:
            return
        origin = str(entry.get("tier", ""))
        if origin not in route.names:
            return  # the tier that answered is gone from the policy: nothing to ask
        if self.gw.rng.random() >= rate:
            return
        body = entry.get("body")
        cached = upstream.answer_text(body, call.kind == "chat") if isinstance(body, dict) else None
        if cached is None:
            return
        s, tier, request, metrics = cache.settings, route.tier(origin), call.body, self.gw.metrics

        def meter(usd: float) -> None:
            metrics.semantic_verify_cost.labels(s.target, s.namespace, origin).inc(usd)

        self.gw.falsehits.submit(
            cache.budget,
            s.max_false_hit_rate,
            cached,
            lambda: self._side_answer(tier, request, call, meter),
        )

    async def _side_answer(
        self,
        tier: TierRoute,
        body: dict[str, Any],
        call: Call,
        meter: Callable[[float], None],
    ) -> str | None:
        """A tier's answer off the user's path (shadow, verification), without waking it and
        within its in-flight limit; its cost goes to ``meter``, never to the tier's own."""
        gw = self.gw
        up = tier.upstream
        state = gw.waker.state(up)
        if state.asleep or state.in_flight >= up.max_in_flight:
            return None
        out = {**body, "model": up.model, "stream": False}
        out.pop("stream_options", None)
        url = routing.choose_replica(up.urls, None, gw.rng) + PATHS[call.kind]
        timeout = self._timeout(gw.config.limits)
        state.in_flight += 1
        try:
            resp = await upstream.post(
                gw.session,
                url,
                out,
                tier=tier.name,
                api_key=up.api_key,
                timeout=timeout,
                refused_means_asleep=False,
            )
            try:
                data = await resp.json(content_type=None)
            finally:
                resp.release()
        except UpstreamError:
            return None
        finally:
            state.in_flight -= 1
        answer = upstream.answer_text(data, call.kind == "chat")
        tin, tout = _tokens(data.get("usage"), call.prompt, len(answer or ""))
        meter(self._cost(tier, tin, tout))
        return answer
