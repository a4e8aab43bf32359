"""An engine simulator: a small HTTP server that stands in for a vLLM OpenAI server (no GPU).

It speaks vLLM 0.33.0's endpoints and metric names (docs/vllm.md) so that gateways, autoscalers,
dashboards and demos can be tested without a model. Start it with ``python -m frugal.enginesim``
(see :mod:`frugal.enginesim.cli`) or in-process with :func:`frugal.enginesim.server.make_app`.

Contract
--------
**Tokens.** A text of n characters counts as ceil(n / 4) tokens, for prompts, answers, usage and
metrics alike. A streamed answer is cut into 4-character pieces, one chunk per token.

**Prompt.** A completion's prompt is its ``prompt`` string. A chat's prompt is its messages
rendered one per line as ``role: content`` (text parts of a content list joined by newlines).

**Answers and quality.** Every answer is a pure function of (prompt, seed, length), independent
of the served name, timing knobs and process:

- the *reference answer* is ``answer_tokens`` three-letter words drawn from a fixed vocabulary
  by a hash of (seed, prompt); it is the same on every simulator with the same seed, and a
  shorter one (``max_tokens``) is a prefix of a longer one;
- a prompt draws a number u in [0, 1) from a second hash of (seed, prompt); a simulator of
  quality q returns the reference answer when u < q, otherwise a *degraded answer*: as many
  filler words ("err umm meh ...") from a disjoint vocabulary, sharing no word with it.

So over many prompts a gateway that compares a tier's answers with those of a quality-1.0
reference tier (same seed and ``answer_tokens``) measures a match rate of about q; the set of
prompts answered correctly is repeatable, and a higher quality is right on a superset of the
prompts a lower one is right on. ``echo`` mode answers with the last user message (chat) or the
prompt (completions) instead. ``max_tokens`` cuts an answer (finish reason ``length``).

**Embeddings.** A unit vector of ``embedding_dim`` floats from a hash of (seed, text): equal texts
give equal vectors, and nothing else is meaningful. ``encoding_format: base64`` is honoured.

**Timing and concurrency.** At most ``max_num_seqs`` requests run at once; the rest wait in FIFO
order (``vllm:num_requests_waiting``). A scheduled request gets its first token after
``ttft_seconds`` and then one token per 1/``tokens_per_second`` seconds; streams are written to
the socket token by token. ``failure_rate`` answers that fraction of requests with HTTP 500 (a
seeded, repeatable sequence). During ``startup_delay_seconds`` after start, or while ``healthy``
is false, /health and every /v1 endpoint answer 503.

**Prefix cache.** Prompts are hashed in full 16-token blocks (64 characters), each block's hash
covering the whole prompt before it; a block prefilled before is a hit. ``prefix_cache_queries``
counts every prompt token, ``prefix_cache_hits`` the tokens of leading blocks that hit.

**Run-time control.** ``GET /sim/config`` returns the knobs; ``PUT /sim/config`` with a JSON
object of some of them changes them at once, also for requests in flight (pacing, queue).
"""
