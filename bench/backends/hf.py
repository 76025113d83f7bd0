"""The transformers backend (``hf``): likelihoods, token statistics and greedy generation.

Two modes answer the same requests with the same numbers (likelihoods within 1e-5 in
float32; generations token for token except on float near-ties between batch layouts):

* ``fast`` (default) — likelihoods: each distinct prompt runs once and all its
  continuations are scored against its KV cache, the LM head only at scored positions,
  length-sorted batches bounded by ``token_budget`` padded tokens (default 2048 on CPU,
  16384 on CUDA; :mod:`hf_loglik`); generation: continuous batching over ``slots`` live
  rows (default 128, fewer when their KV cache would pass ``kv_cache_gib``;
  :mod:`hf_generate`). On CPU, grouped-query attention reads the shared KV heads in place
  instead of copying them per query head (:mod:`attention`; bit-identical). A model
  under 20M parameters on CPU answers on one thread (:mod:`bench.threads`).
* ``naive`` — the field's way, our reference for tests and the speed benchmark: fixed
  batches of ``batch_size`` in request order, full sequences, full LM head, no dedupe;
  ``model.generate`` batches.

``LogLikelihood`` and ``TokenStats`` of the same (prompt, continuation) share one
computation in fast mode.

Float32 agreement (SmolLM2-135M-Instruct, TOFU forget01, first 20 items per set, 440
distinct likelihood requests): per item, the mean token log-prob of fast and naive differ
by at most 1.0e-5; per token by up to 3.5e-5 — the naive path run with batches of 8
instead of 32 differs from itself by as much (3.1e-5 per token, 7.9e-6 per item): float32
matmuls round differently for every batch shape. Generation is token-identical to naive
(64/64 TOFU questions of up to 200 tokens). The full-run timings are in
``benchmarks/README.md``. The backend moves/casts the bundle's module in place to
``device``/``dtype`` (default device: CUDA when available, else CPU) and puts it in eval
mode; it owns the module until :meth:`close`.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.backends import kv
from bench.backends.attention import gqa_attention
from bench.backends.base import Backend
from bench.backends.cache import SCORE_PHASE
from bench.backends.hf_generate import GenItem, eos_ids, generate_fast, generate_naive
from bench.backends.hf_loglik import ScoreItem, score_fast, score_naive
from bench.backends.rolling import prefix_token, windows
from bench.errors import BenchError
from bench.model_bundle import ModelBundle, tokenize_pairs
from bench.progress import Progress
from bench.registry import BACKENDS
from bench.requests import (
    Generate,
    GenerateResponse,
    LogLikelihood,
    LogLikelihoodResponse,
    Request,
    Response,
    TokenStats,
    TokenStatsResponse,
)
from bench.threads import is_small_cpu_model, model_threads

MODES = ("fast", "naive")
DTYPES = ("float32", "bfloat16")
# Padded tokens per likelihood batch when not given (2048 measured fastest on a 2-core CPU).
DEFAULT_TOKEN_BUDGET = {"cpu": 2048, "cuda": 16384}


@BACKENDS.register("hf", "transformers on CPU/GPU: prefix-shared likelihoods, continuous-batching generation")
class HFBackend(Backend):
    """Answer requests with a transformers causal LM (see the module docstring)."""

    name = "hf"

    def __init__(self, bundle: ModelBundle, *, mode: str = "fast", token_budget: int | None = None,
                 dtype: str = "float32", batch_size: int = 32, slots: int = 128,
                 kv_cache_gib: float = 4.0, device: str | None = None, max_length: int | None = None):
        import torch

        if mode not in MODES:
            raise BenchError(f"hf backend: mode '{mode}' is not one of {', '.join(MODES)}")
        if dtype not in DTYPES:
            raise BenchError(f"hf backend: dtype '{dtype}' is not one of {', '.join(DTYPES)}")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if token_budget is None:  # small batches suit CPU caches, large ones GPUs
            token_budget = DEFAULT_TOKEN_BUDGET["cuda" if str(device).startswith("cuda") else "cpu"]
        if min(token_budget, batch_size, slots) < 1 or kv_cache_gib <= 0:
            raise BenchError(f"hf backend: token_budget ({token_budget}), batch_size ({batch_size}) "
                             f"and slots ({slots}) must be ≥ 1 and kv_cache_gib ({kv_cache_gib}) > 0")
        self.bundle: ModelBundle | None = bundle
        self.mode, self.token_budget, self.dtype, self.batch_size = mode, token_budget, dtype, batch_size
        self.slots, self.kv_cache_gib = slots, kv_cache_gib
        self.device = torch.device(device)
        model = bundle.module
        model.to(device=self.device, dtype=getattr(torch, dtype))
        model.eval()
        tok = bundle.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.pad_id = int(pad) if pad is not None else 0
        self._eos = sorted(eos_ids(model, tok))
        # longest scored window (prompt + continuation); longer requests are split (rolling)
        self.max_length = int(max_length or getattr(model.config, "max_position_embeddings", 0) or 1 << 30)
        if self.max_length < 2:
            raise BenchError(f"hf backend: max_length must be at least 2, got {self.max_length}")
        self._prefix = prefix_token(tok, model)

    # ------------------------------------------------------------------ contract

    def settings(self) -> dict[str, Any]:
        """What besides model and request can change an answer, plus scheduling knobs.

        ``mode``, ``token_budget``, ``batch_size``, ``slots`` and ``kv_cache_gib`` only
        change float rounding and scheduling; :meth:`cache_settings` leaves them out of the
        request-cache key.
        """
        import torch
        import transformers

        model = self._model()
        return {
            "backend": self.name,
            "mode": self.mode,
            "dtype": self.dtype,
            "device": self.device.type,
            "token_budget": self.token_budget,
            "batch_size": self.batch_size,
            "slots": self.slots,
            "kv_cache_gib": self.kv_cache_gib,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "attn_implementation": getattr(model.config, "_attn_implementation", None),
            "eos_token_ids": self._eos,
            "max_length": self.max_length,
            "rolling_prefix_token": self._prefix,
            "decoding": "greedy",
        }

    def cache_settings(self) -> dict[str, Any]:
        """The decoding-relevant part of :meth:`settings` (the request-cache key)."""
        s = self.settings()
        for k in ("mode", "token_budget", "batch_size", "slots", "kv_cache_gib"):
            s.pop(k)
        return s

    def engines(self) -> dict[str, str]:
        e = f"hf:{self.mode}"
        return {"loglikelihood": e, "token_stats": e, "generate": e}

    def close(self) -> None:
        if self.bundle is None:
            return
        dev = self.device
        small = is_small_cpu_model(self.bundle.module)
        self.bundle = None
        if small:  # a few MB: a full collection (~0.4 s with torch and transformers loaded) frees nothing that matters
            return
        gc.collect()
        if dev.type == "cuda":
            import torch

            torch.cuda.empty_cache()

    def answer(self, requests: Sequence[Request]) -> list[Response]:
        import torch

        self._model()  # raises after close()
        out: list[Response | None] = [None] * len(requests)
        score_idx = [i for i, r in enumerate(requests) if isinstance(r, (LogLikelihood, TokenStats))]
        gen_idx = [i for i, r in enumerate(requests) if isinstance(r, Generate)]
        if len(score_idx) + len(gen_idx) != len(requests):
            bad = next(r for r in requests if not isinstance(r, (LogLikelihood, TokenStats, Generate)))
            raise BenchError(f"hf backend: unknown request type {type(bad).__name__}")
        fast = gqa_attention(self._model()) if self.mode == "fast" else contextlib.nullcontext()
        self.last_phases = {}
        with torch.inference_mode(), fast, model_threads(self._model()):
            if score_idx:
                t0 = time.perf_counter()
                for i, resp in zip(score_idx, self._score([requests[i] for i in score_idx]), strict=True):
                    out[i] = resp
                self.last_phases[SCORE_PHASE] = time.perf_counter() - t0
            if gen_idx:
                t0 = time.perf_counter()
                for i, resp in zip(gen_idx, self._generate([requests[i] for i in gen_idx]), strict=True):
                    out[i] = resp
                self.last_phases["generate"] = time.perf_counter() - t0
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------ internals

    def _model(self) -> Any:
        if self.bundle is None:
            raise BenchError("hf backend: used after close()")
        return self.bundle.module

    def _score(self, reqs: Sequence[LogLikelihood | TokenStats]) -> list[Response]:
        """Score requests; an empty prompt or one past ``max_length`` is split into rolling
        windows (:mod:`rolling`) whose scores are concatenated."""
        tok = self.bundle.tokenizer  # type: ignore[union-attr]
        parts: list[list[int]] = []  # request -> indices of its window requests
        flat: list[_TokenRequest] = []
        split = False
        ids = tokenize_pairs(tok, [(r.prompt, r.continuation) for r in reqs])
        for r, (p, c) in zip(reqs, ids):
            wins = windows(p, c, self.max_length, self._prefix) if c else [(tuple(p), ())]
            if len(wins) == 1 and wins[0][0] == tuple(p):
                parts.append([len(flat)])
                flat.append(_TokenRequest(tuple(p), tuple(c), isinstance(r, TokenStats), r))
                continue
            split = True
            idx = []
            for wp, wc in wins:
                idx.append(len(flat))
                flat.append(_TokenRequest(wp, wc, isinstance(r, TokenStats)))
            parts.append(idx)
        scored = self._score_pairs(flat)
        if not split:
            return scored
        out: list[Response] = []
        for r, idx in zip(reqs, parts):
            if len(idx) == 1 and flat[idx[0]].request is r:
                out.append(scored[idx[0]])
            else:
                out.append(_concat(r, [scored[i] for i in idx]))
        return out

    def _score_pairs(self, reqs: Sequence[_TokenRequest]) -> list[Response]:
        model = self._model()
        if self.mode == "naive":
            items = [ScoreItem(r.prompt, r.continuation, r.stats) for r in reqs]
            scores = score_naive(model, items, self.batch_size, self.pad_id)
            return [_score_response(r, s) for r, s in zip(reqs, scores, strict=True)]
        # fast: one item per distinct token pair; stats if any request of it wants them
        want: dict[tuple[tuple[int, ...], tuple[int, ...]], bool] = {}
        for r in reqs:
            key = (r.prompt, r.continuation)
            want[key] = want.get(key, False) or r.stats
        keys = list(want)
        with Progress("evaluate: likelihoods", len(keys), "requests") as bar:
            toks = [0]

            def on_batch(n: int, t: int) -> None:
                toks[0] += t
                bar.update(n, tokens=toks[0])

            scores = score_fast(model, [ScoreItem(p, c, want[(p, c)]) for p, c in keys],
                                self.token_budget, self.pad_id, on_batch=on_batch)
        by_key = dict(zip(keys, scores, strict=True))
        return [_score_response(r, by_key[(r.prompt, r.continuation)]) for r in reqs]

    def gen_slots(self, items: Sequence[GenItem]) -> int:
        """Rows generated at once: ``slots``, capped so that their KV cache at the longest
        item (prompt + ``max_new_tokens``) fits ``kv_cache_gib`` (memory stays bounded)."""
        max_len = max((len(it.prompt) + it.max_new_tokens for it in items), default=0)
        return _kv_slots(self.slots, self.kv_cache_gib, kv.bytes_per_token(self._model()), max_len)

    def _generate(self, reqs: Sequence[Generate]) -> list[Response]:
        model, tok = self._model(), self.bundle.tokenizer  # type: ignore[union-attr]
        prompts = tok([r.prompt for r in reqs], add_special_tokens=False)["input_ids"] if reqs else []
        items = [GenItem(tuple(ids), int(r.max_new_tokens), tuple(r.stop)) for r, ids in zip(reqs, prompts)]
        if self.mode == "naive":
            res = generate_naive(model, tok, items, self.batch_size, self.pad_id)
        else:
            with Progress("evaluate: generation", len(items), "requests") as bar:
                toks = [0]

                def on_step(finished: int, t: int) -> None:
                    toks[0] += t
                    bar.update(finished - bar.done, tokens=toks[0])

                res = generate_fast(model, tok, items, self.gen_slots(items), self.pad_id,
                                    on_step=on_step)
        return [GenerateResponse(g.text, g.num_tokens, g.finish_reason) for g in res]


def _kv_slots(slots: int, kv_cache_gib: float, per_token: int, max_len: int) -> int:
    """Live generation rows: ``slots``, fewer if their KV cache (``max_len`` positions of
    ``per_token`` bytes each) would pass ``kv_cache_gib``; at least 1."""
    if per_token <= 0 or max_len <= 0:
        return slots
    return max(1, min(slots, int(kv_cache_gib * (1 << 30)) // (per_token * max_len)))


@dataclass(frozen=True)
class _TokenRequest:
    """A request in token ids: a whole request (``request``) or one rolling window of a
    split one (``request`` None)."""

    prompt: tuple[int, ...]
    continuation: tuple[int, ...]
    stats: bool
    request: Any = field(default=None, compare=False)


def _concat(req: Request, parts: Sequence[Response]) -> Response:
    lp = tuple(x for p in parts for x in p.token_logprobs)
    greedy = tuple(x for p in parts for x in p.is_greedy)
    if isinstance(req, TokenStats):
        mu = tuple(x for p in parts for x in p.mu)
        var = tuple(x for p in parts for x in p.var)
        return TokenStatsResponse(lp, greedy, mu, var, tuple(-m for m in mu))
    return LogLikelihoodResponse(lp, greedy)


def _score_response(req: Any, s: Any) -> Response:
    lp, greedy = tuple(float(x) for x in s.logprobs), tuple(bool(x) for x in s.greedy)
    if req.stats:
        mu = tuple(float(x) for x in s.mu)
        return TokenStatsResponse(lp, greedy, mu, tuple(float(x) for x in s.var), tuple(-m for m in mu))
    return LogLikelihoodResponse(lp, greedy)
