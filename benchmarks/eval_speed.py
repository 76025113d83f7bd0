#!/usr/bin/env python
"""Speed benchmark: a full TOFU evaluation the field's way against ours.

    python benchmarks/eval_speed.py --data-dir ../shared/data/tofu --limit 5
    python benchmarks/eval_speed.py --data-dir ../shared/data/tofu --json speed.json
    python benchmarks/eval_speed.py --data-dir ../shared/data/tofu --device cuda \\
        --config-model --paths naive,fast,fast-bf16

Every path evaluates the same model on the same eval sets of the task (default
``tofu-forget01``: forget 40, retain 400, real authors 100, world facts 117; ``--limit N``
keeps the first N items of each set) and scores the answers with the same metrics
(:func:`bench.evaluate.evaluate`), so the per-item values can be compared:

* ``naive`` — the field's way (open-unlearning): ``HFBackend(mode="naive")``, fixed batches
  of ``--batch-size`` in dataset order, one pass per (eval set, metric): probability, truth
  ratio, extraction strength, exact memorization and ROUGE-L each run the model over their
  own requests; no dedupe across metrics, no cache (:class:`PerMetricLayer`).
* ``naive-bs8`` — the naive path with batches of 8 instead of 32: the same computation in
  other batch shapes, i.e. the float32 rounding noise every path is compared against
  (not in the default ``--paths``).
* ``fast`` — what ``bench run`` does: ``HFBackend(mode="fast")`` behind
  ``AnsweringLayer(..., cache_dir=None)``, all requests of the run in one call (deduped).
* ``fast-bf16`` — the same in bfloat16 (opt-in in ``bench run``); its metrics are also
  compared with ``fast`` (how far bf16 moves them from fp32).
* ``vllm-gen`` — ``VLLMBackend(loglikelihood_engine="hf")``: generation on vLLM,
  likelihoods on the fast hf path (the numbers of ``fast``); engine start-up is part of
  its total. Skipped with a message when vllm does not import.
* ``vllm`` — ``VLLMBackend`` with likelihoods through vLLM's prompt log-probs too.

Conventions of the figures (all wall-clock seconds, ``time.perf_counter``):

* ``startup``: building the backend (moving/casting the model; starting a vLLM engine).
  Loading the model from disk is reported as ``load_s`` and left out of the totals.
* ``likelihood`` / ``generation``: time inside the backend on LogLikelihood/TokenStats and
  on Generate requests (every backend call is split into the two kinds and each part is
  timed on its own, :class:`TimedBackend`); ``other`` = evaluation wall time minus both
  (building requests, dedupe, ROUGE and the other scoring). ``total`` = startup +
  evaluation wall time. Each path first answers :func:`warm_up_sets` untimed. Per phase
  the process's CPU seconds are recorded too (steadier than wall time on a busy machine;
  child processes, e.g. vLLM's engine, not included). On a CPU shared with other jobs use
  ``--threads 1``: spinning OpenMP threads that lose their core slow everything down.
* Generation tokens/s = generated tokens (``GenerateResponse.num_tokens``; EOS not counted)
  per generation second. Likelihood tokens/s = prompt + continuation tokens
  (:func:`bench.model_bundle.tokenize_pair`) of the likelihood requests the backend was
  given (the naive path gives it every metric's requests, the fast paths the distinct
  ones) per likelihood second.
* Memory: peak resident set size (MiB) sampled every 0.1 s during the path (this process
  plus its children, e.g. a vLLM engine core; psutil, else ``/proc/self/statm``), the
  process's lifetime ``ru_maxrss``, and on CUDA ``torch.cuda.max_memory_allocated``.
* Agreement: per eval set and metric, the largest per-item absolute difference from the
  reference path (``naive`` when it ran, else the first path run), the number of items
  defined on one side only, the share of identical generations and the change of the
  mean ROUGE-L.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import os
import resource
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script from a checkout: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.errors import BenchError  # noqa: E402

PATHS = ("naive", "naive-bs8", "fast", "fast-bf16", "vllm-gen", "vllm")
LIKELIHOOD, GENERATION = "likelihood", "generation"
MIB = 1 << 20

# A 1B-class Llama (Llama-3.2-1B's shape; vocabulary: the tokenizer's), for GPU timing.
RANDOM_LLAMA = {
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
}


# --------------------------------------------------------------------------- request plan


def plan_requests(bundle: Any, eval_sets: Sequence[Any]) -> tuple[list[Any], list[str]]:
    """The requests :func:`bench.evaluate.evaluate` sends, in its order, and for each the
    pass it belongs to in the field's way of working: ``"<set>/<metric key>"``."""
    from bench.evaluate import plan

    p = plan(bundle, eval_sets)
    return p.requests, p.labels


# --------------------------------------------------------------------------- timing


def is_generate(request: Any) -> bool:
    from bench.requests import Generate

    return isinstance(request, Generate)


@dataclass
class Pass:
    """One timed backend call: a phase of one answer() call (or of one metric's pass)."""

    label: str
    phase: str  # LIKELIHOOD | GENERATION
    seconds: float
    requests: int
    tokens: int = 0  # filled by TimedBackend.count_tokens (likelihood) / at once (generation)
    cpu_s: float = 0.0  # CPU time of this process (all threads; not child processes)


class TimedBackend:
    """Wraps a backend; each ``answer`` call is split into its likelihood requests and its
    Generate requests, answered by two backend calls timed on their own (order kept).

    Generated tokens are counted from the responses as they come; likelihood tokens are
    counted by :meth:`count_tokens` after the run, so tokenizing for the count is never
    timed. ``sync`` (e.g. ``torch.cuda.synchronize``) runs before each clock stop.
    """

    def __init__(self, backend: Any, tokenizer: Any, *, sync: Callable[[], None] | None = None,
                 bar: Any = None):
        self.backend = backend
        self.tokenizer = tokenizer
        self.sync = sync
        self.bar = bar
        self.name = getattr(backend, "name", "?")
        self.passes: list[Pass] = []
        self._ll_requests: list[list[Any]] = []  # per likelihood pass, to count tokens later

    def answer(self, requests: Sequence[Any], label: str | None = None) -> list[Any]:
        out: list[Any] = [None] * len(requests)
        ll = [i for i, r in enumerate(requests) if not is_generate(r)]
        gen = [i for i, r in enumerate(requests) if is_generate(r)]
        label = label or f"call {len({p.label for p in self.passes}) + 1}"
        for phase, idx in ((LIKELIHOOD, ll), (GENERATION, gen)):
            if not idx:
                continue
            part = [requests[i] for i in idx]
            if self.bar is not None:
                self.bar.set_postfix_str(f"{label} {phase} ({len(part)})")
            t0, c0 = time.perf_counter(), time.process_time()
            got = self.backend.answer(part)
            if self.sync is not None:
                self.sync()
            seconds, cpu_s = time.perf_counter() - t0, time.process_time() - c0
            if len(got) != len(part):
                raise BenchError(f"backend '{self.name}' returned {len(got)} responses for {len(part)} requests")
            for i, resp in zip(idx, got):
                out[i] = resp
            tokens = sum(int(r.num_tokens) for r in got) if phase == GENERATION else 0
            self.passes.append(Pass(label, phase, seconds, len(part), tokens, cpu_s))
            if phase == LIKELIHOOD:
                self._ll_requests.append(part)
            if self.bar is not None:
                self.bar.update(len(part))
        return out

    def count_tokens(self) -> None:
        """Fill in the prompt + continuation tokens of every likelihood pass."""
        from bench.model_bundle import tokenize_pair

        memo: dict[tuple[str, str], int] = {}
        ll_passes = [p for p in self.passes if p.phase == LIKELIHOOD]
        for p, reqs in zip(ll_passes, self._ll_requests, strict=True):
            n = 0
            for r in reqs:
                key = (r.prompt, r.continuation)
                if key not in memo:
                    a, b = tokenize_pair(self.tokenizer, r.prompt, r.continuation)
                    memo[key] = len(a) + len(b)
                n += memo[key]
            p.tokens = n

    def phases(self) -> dict[str, dict[str, float]]:
        """Per phase: seconds, backend calls, requests, tokens and tokens per second."""
        out = {}
        for phase in (LIKELIHOOD, GENERATION):
            ps = [p for p in self.passes if p.phase == phase]
            s = sum(p.seconds for p in ps)
            tok = sum(p.tokens for p in ps)
            out[phase] = {"seconds": s, "cpu_s": sum(p.cpu_s for p in ps), "calls": len(ps),
                          "requests": sum(p.requests for p in ps),
                          "tokens": tok, "tokens_per_s": tok / s if s > 0 else None}
        return out

    # the Backend contract, passed through
    def settings(self) -> dict[str, Any]:
        return self.backend.settings()

    def cache_settings(self) -> dict[str, Any]:
        fn = getattr(self.backend, "cache_settings", None) or self.backend.settings
        return fn()

    def engines(self) -> dict[str, str]:
        return self.backend.engines()

    def close(self) -> None:
        self.backend.close()


class PerMetricLayer:
    """Stands in for the answering layer in :func:`bench.evaluate.evaluate` on the naive path:
    the requests of each (eval set, metric) are answered by their own backend call, in
    dataset order, with no dedupe and no cache — one pass per metric, as open-unlearning.
    """

    def __init__(self, backend: TimedBackend, expected: Sequence[Any], labels: Sequence[str]):
        if len(expected) != len(labels):
            raise BenchError(f"{len(expected)} requests but {len(labels)} labels")
        self.backend = backend
        self.expected = list(expected)
        self.labels = list(labels)
        self._requests = 0

    def answer(self, requests: Sequence[Any]) -> list[Any]:
        if list(requests) != self.expected:
            raise BenchError("the naive path got other requests than plan_requests() built "
                             "(did evaluate()'s request order change?)")
        groups: dict[str, list[int]] = {}
        for i, label in enumerate(self.labels):
            groups.setdefault(label, []).append(i)
        out: list[Any] = [None] * len(requests)
        for label, idx in groups.items():
            got = self.backend.answer([requests[i] for i in idx], label=label)
            for i, resp in zip(idx, got):
                out[i] = resp
        self._requests += len(requests)
        return out

    def stats(self) -> dict[str, int]:
        return {"requests": self._requests, "passes": len(dict.fromkeys(self.labels))}

    def close(self) -> None:
        self.backend.close()


# --------------------------------------------------------------------------- memory


def _rss_reader() -> Callable[[], int]:
    """A function returning the resident set size in bytes (this process + children)."""
    try:
        import psutil

        proc = psutil.Process()

        def rss() -> int:
            total = proc.memory_info().rss
            for child in proc.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
            return total

        return rss
    except ImportError:
        page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

        def rss_proc() -> int:
            try:
                with open("/proc/self/statm") as f:
                    return int(f.read().split()[1]) * page
            except OSError:
                return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

        return rss_proc


class MemorySampler:
    """Context manager: samples RSS every ``interval`` seconds in a thread; keeps the peak."""

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self._read = _rss_reader()
        self.start_bytes = 0
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        try:
            self.peak_bytes = max(self.peak_bytes, self._read())
        except Exception:  # a vanished child process etc.: skip the sample
            pass

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> MemorySampler:
        self.start_bytes = self.peak_bytes = self._read()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()


# --------------------------------------------------------------------------- one path


@dataclass
class PathResult:
    """What one path measured, and what it computed (to compare with the other paths)."""

    name: str
    load_s: float
    startup_s: float
    evaluate_s: float
    phases: dict[str, dict[str, float]]
    passes: list[Pass]
    memory: dict[str, float | None]
    sets: dict[str, Any]  # set name → bench.task.SetResult
    samples: list[dict[str, Any]]
    request_stats: dict[str, Any]
    backend: dict[str, Any]
    engine_start_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return self.startup_s + self.evaluate_s

    @property
    def other_s(self) -> float:
        return self.evaluate_s - sum(p["seconds"] for p in self.phases.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "load_s": self.load_s, "startup_s": self.startup_s, "engine_start_s": self.engine_start_s,
            "evaluate_s": self.evaluate_s, "other_s": self.other_s, "total_s": self.total_s,
            "phases": self.phases,
            "passes": [vars(p) for p in self.passes],
            "memory_mib": self.memory,
            "request_stats": self.request_stats,
            "backend": self.backend,
            "aggregates": {name: dict(r.aggregates) for name, r in self.sets.items()},
            **self.extra,
        }


def warm_up_sets(eval_sets: Sequence[Any], max_new_tokens: int = 8) -> list[Any]:
    """Per set, its first item with ``"(warm-up) "`` before the question (so no prompt of
    the timed run is seen, and no prefix cache is primed) and a generation budget of
    ``max_new_tokens``: answered once per path, untimed, before the timed evaluation, so
    that one-off costs (kernel and thread-pool set-up, CUDA context, lazy imports such as
    the ROUGE scorer) are charged to no path.
    """
    import dataclasses

    from bench.items import EvalSet

    out = []
    for es in eval_sets:
        if es.items:
            it = es.items[0]
            warm = dataclasses.replace(it, id=f"warm-up/{it.id}", question=f"(warm-up) {it.question}")
            out.append(EvalSet(es.name, [warm], es.metrics, es.role,
                               min(max_new_tokens, es.max_new_tokens), es.source))
    return out


def make_backend(path: str, bundle: Any, *, device: str, batch_size: int, token_budget: int | None,
                 slots: int = 128, vllm_dtype: str = "float32") -> Any:
    """The backend of ``path`` (see the module docstring)."""
    if path in ("naive", "naive-bs8", "fast", "fast-bf16"):
        from bench.backends.hf import HFBackend

        mode = "naive" if path.startswith("naive") else "fast"
        if path == "naive-bs8":
            batch_size = 8
        dtype = "bfloat16" if path == "fast-bf16" else "float32"
        return HFBackend(bundle, mode=mode, dtype=dtype, batch_size=batch_size,
                         token_budget=token_budget, slots=slots, device=device)
    if path in ("vllm", "vllm-gen"):
        from bench.backends.vllm import VLLMBackend

        return VLLMBackend(bundle, dtype=vllm_dtype, keep_engine=False,
                           kv_cache_gib=2.0 if device == "cpu" else None,
                           loglikelihood_engine="hf" if path == "vllm-gen" else "vllm",
                           hf_fallback_options={"device": device, "batch_size": batch_size,
                                                "token_budget": token_budget, "slots": slots})
    raise BenchError(f"unknown path '{path}' (choose from {', '.join(PATHS)})")


def run_path(path: str, make_bundle: Callable[[], Any], eval_sets: Sequence[Any], *,
             device: str = "cpu", batch_size: int = 32, token_budget: int | None = None,
             slots: int = 128, vllm_dtype: str = "float32", progress: bool | None = None,
             warmup: bool = True) -> PathResult:
    """Load a fresh model with ``make_bundle()``, evaluate ``eval_sets`` on ``path``, time it
    (after an untimed warm-up of the same backend on :func:`warm_up_sets` unless ``warmup``
    is false)."""
    from tqdm.auto import tqdm

    from bench.backends.cache import AnsweringLayer
    from bench.evaluate import evaluate

    cuda = device.startswith("cuda")
    sync = None
    if cuda:
        import torch

        sync = torch.cuda.synchronize
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    t0 = time.perf_counter()
    bundle = make_bundle()
    load_s = time.perf_counter() - t0
    requests, labels = plan_requests(bundle, eval_sets)
    n_expected = len(requests) if path.startswith("naive") else len(set(requests))

    with MemorySampler() as mem:
        t0 = time.perf_counter()
        inner = make_backend(path, bundle, device=device, batch_size=batch_size,
                             token_budget=token_budget, slots=slots, vllm_dtype=vllm_dtype)
        if sync is not None:
            sync()
        startup_s = time.perf_counter() - t0
        warmup_s = 0.0
        if warmup:
            t0 = time.perf_counter()
            evaluate(bundle, warm_up_sets(eval_sets), AnsweringLayer(inner, "warm-up", None))
            warmup_s = time.perf_counter() - t0
        bar = tqdm(total=n_expected, desc=path, unit="req", leave=False,
                   disable=(not progress) if progress is not None else None)
        timed = TimedBackend(inner, bundle.tokenizer, sync=sync, bar=bar)
        layer: Any
        if path.startswith("naive"):
            layer = PerMetricLayer(timed, requests, labels)
        else:
            layer = AnsweringLayer(timed, "speed-benchmark", None)
        backend_settings = inner.settings()
        engine_start = getattr(inner, "engine_start_s", None)
        t0 = time.perf_counter()
        try:
            sets, samples = evaluate(bundle, eval_sets, layer)
        finally:
            evaluate_s = time.perf_counter() - t0
            bar.close()
            layer.close()
    timed.count_tokens()
    memory: dict[str, float | None] = {
        "rss_start": mem.start_bytes / MIB,
        "rss_peak": mem.peak_bytes / MIB,
        "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
        "cuda_peak": None,
    }
    if cuda:
        import torch

        memory["cuda_peak"] = torch.cuda.max_memory_allocated() / MIB
    result = PathResult(path, load_s, startup_s, evaluate_s, timed.phases(), timed.passes, memory,
                        sets, samples, layer.stats(), backend_settings,
                        engine_start_s=engine_start, extra={"warmup_s": warmup_s})
    del bundle, inner, timed, layer
    gc.collect()
    if cuda:
        import torch

        torch.cuda.empty_cache()
    return result


# --------------------------------------------------------------------------- agreement


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def compare(ref: PathResult, other: PathResult) -> dict[str, Any]:
    """How far ``other``'s per-item metric values and generations are from ``ref``'s.

    ``metrics["<set>/<key>"]``: ``max_abs_diff`` over the items defined in both (0 when
    equal, including equal infinities), ``max_rel_diff`` = largest |a − b| / max(|a|, |b|)
    (truth ratios are ratios of probabilities: their absolute error scales with them),
    ``one_sided`` = items defined (not None/NaN) in
    one path only, ``aggregate_delta`` = other − ref of the set's aggregate.
    ``identical_generations[set]`` = share of items whose generation is the same string
    (``"all"``: over every set); ``rouge_l_delta[set]`` = other − ref mean ROUGE-L.
    """
    metrics: dict[str, dict[str, Any]] = {}
    rouge: dict[str, float | None] = {}
    for name, r in ref.sets.items():
        o = other.sets.get(name)
        if o is None or list(o.item_ids) != list(r.item_ids):
            raise BenchError(f"paths '{ref.name}' and '{other.name}' evaluated other items in set '{name}'")
        for key, rv in r.per_item.items():
            ov = o.per_item[key]
            diffs, rel, one_sided = [], [], 0
            for a, b in zip(rv, ov, strict=True):
                if _missing(a) and _missing(b):
                    continue
                if _missing(a) or _missing(b):
                    one_sided += 1
                    continue
                d = 0.0 if a == b else abs(float(a) - float(b))
                diffs.append(d)
                rel.append(d / max(abs(float(a)), abs(float(b))) if d else 0.0)
            ra, oa = r.aggregates.get(key), o.aggregates.get(key)
            delta = None if _missing(ra) or _missing(oa) else float(oa) - float(ra)  # type: ignore[arg-type]
            metrics[f"{name}/{key}"] = {"max_abs_diff": max(diffs, default=0.0),
                                        "max_rel_diff": max(rel, default=0.0), "one_sided": one_sided,
                                        "items": len(rv), "aggregate_delta": delta}
            if key == "rouge_l":
                rouge[name] = delta
    same: dict[str, list[int]] = {}
    for a, b in zip(ref.samples, other.samples, strict=True):
        if a["id"] != b["id"]:
            raise BenchError(f"paths '{ref.name}' and '{other.name}' hold samples in another order")
        if a["generation"] is None and b["generation"] is None:
            continue
        s = same.setdefault(a["set"], [0, 0])
        s[0] += a["generation"] == b["generation"]
        s[1] += 1
    ident = {k: v[0] / v[1] for k, v in same.items()}
    n_same, n_all = sum(v[0] for v in same.values()), sum(v[1] for v in same.values())
    ident["all"] = n_same / n_all if n_all else 1.0
    return {"reference": ref.name, "path": other.name, "metrics": metrics,
            "identical_generations": ident, "rouge_l_delta": rouge}


# --------------------------------------------------------------------------- report


def speedups(results: Sequence[PathResult], ref: PathResult) -> dict[str, dict[str, float | None]]:
    """``ref`` time / path time, for the total and each phase (> 1: faster than ``ref``)."""

    def ratio(a: float, b: float) -> float | None:
        return a / b if b > 0 else None

    out = {}
    for r in results:
        out[r.name] = {
            "total": ratio(ref.total_s, r.total_s),
            LIKELIHOOD: ratio(ref.phases[LIKELIHOOD]["seconds"], r.phases[LIKELIHOOD]["seconds"]),
            GENERATION: ratio(ref.phases[GENERATION]["seconds"], r.phases[GENERATION]["seconds"]),
        }
    return out


def _f(x: Any, fmt: str = "{:.2f}") -> str:
    return "-" if x is None else fmt.format(x)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) if i else str(c).ljust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths]), *[line(r) for r in rows]])


def format_path(r: PathResult) -> str:
    """The per-path block printed as soon as a path has finished."""
    ll, gen = r.phases[LIKELIHOOD], r.phases[GENERATION]
    lines = [f"== {r.name}: total {r.total_s:.2f} s (startup {r.startup_s:.2f} s"
             + (f", engine start {r.engine_start_s:.2f} s" if r.engine_start_s is not None else "")
             + f"; model load {r.load_s:.2f} s, warm-up {r.extra.get('warmup_s', 0.0):.2f} s not counted)",
             f"   likelihood  {ll['seconds']:8.2f} s  {ll['calls']:3d} calls  {ll['requests']:6d} req  "
             f"{ll['tokens']:8d} tok  {_f(ll['tokens_per_s'], '{:.0f}')} tok/s  (CPU {ll['cpu_s']:.2f} s)",
             f"   generation  {gen['seconds']:8.2f} s  {gen['calls']:3d} calls  {gen['requests']:6d} req  "
             f"{gen['tokens']:8d} tok  {_f(gen['tokens_per_s'], '{:.1f}')} tok/s  (CPU {gen['cpu_s']:.2f} s)",
             f"   other       {r.other_s:8.2f} s  (requests, dedupe, scoring)",
             f"   memory      peak RSS {r.memory['rss_peak']:.0f} MiB (start {r.memory['rss_start']:.0f}), "
             f"ru_maxrss {r.memory['ru_maxrss']:.0f} MiB, CUDA peak {_f(r.memory['cuda_peak'], '{:.0f}')} MiB"]
    if r.name.startswith("naive"):
        per = {}
        for p in r.passes:
            per[p.label] = per.get(p.label, 0.0) + p.seconds
        lines.append("   passes      " + ", ".join(f"{k} {v:.2f}s" for k, v in per.items()))
    return "\n".join(lines)


def format_report(results: Sequence[PathResult], comparisons: Sequence[dict[str, Any]],
                  ups: dict[str, dict[str, float | None]], ref_name: str, skipped: dict[str, str]) -> str:
    """The final tables: timings, speed-ups vs the reference, agreement of the metrics."""
    rows = []
    for r in results:
        ll, gen, up = r.phases[LIKELIHOOD], r.phases[GENERATION], ups[r.name]
        rows.append([r.name, _f(r.startup_s), _f(ll["seconds"]), _f(gen["seconds"]), _f(r.other_s),
                     _f(r.total_s), _f(gen["tokens_per_s"], "{:.1f}"), _f(ll["tokens_per_s"], "{:.0f}"),
                     _f(r.memory["rss_peak"], "{:.0f}"), _f(r.memory["cuda_peak"], "{:.0f}"),
                     _f(up["total"], "{:.2f}x"), _f(up[LIKELIHOOD], "{:.2f}x"), _f(up[GENERATION], "{:.2f}x")])
    out = [_table(["path", "startup s", "likelihood s", "generation s", "other s", "total s",
                   "gen tok/s", "ll tok/s", "peak RSS MiB", "CUDA MiB",
                   f"speed-up vs {ref_name}", "ll speed-up", "gen speed-up"], rows)]
    for name, why in skipped.items():
        out.append(f"{name}: {why}")
    if comparisons:
        cols = [f"{c['path']} vs {c['reference']}" for c in comparisons]
        keys = list(comparisons[0]["metrics"])
        rows = []
        for k in keys:
            cells = []
            for c in comparisons:
                m = c["metrics"][k]
                cells.append(_f(m["max_abs_diff"], "{:.1e}") + " (rel " + _f(m.get("max_rel_diff"), "{:.1e}") + ")"
                             + (f" ({m['one_sided']} one-sided)" if m["one_sided"] else ""))
            rows.append([k, *cells])
        rows.append(["identical generations", *[f"{c['identical_generations']['all']:.1%}" for c in comparisons]])
        for s in comparisons[0]["rouge_l_delta"]:
            rows.append([f"{s} mean ROUGE-L Δ", *[_f(c["rouge_l_delta"].get(s), "{:+.4f}") for c in comparisons]])
        out.append("\nlargest per-item |Δ| of every metric (and relative |Δ|):")
        out.append(_table(["set/metric", *cols], rows))
    return "\n".join(out)


# --------------------------------------------------------------------------- models


def parse_overrides(text: str) -> dict[str, Any]:
    """``"hidden_size=512,num_hidden_layers=4"`` → ``{"hidden_size": 512, ...}`` (ints, floats,
    true/false)."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise BenchError(f"--config: '{part}' is not key=value")
        v: Any = value.strip()
        if v.lower() in ("true", "false"):
            v = v.lower() == "true"
        else:
            for cast in (int, float):
                try:
                    v = cast(v)
                    break
                except ValueError:
                    pass
        out[key.strip()] = v
    return out


def build_random_llama(tokenizer: Any, overrides: dict[str, Any] | None = None, seed: int = 0) -> Any:
    """A randomly initialised ``LlamaForCausalLM`` (fp32, eval mode) of :data:`RANDOM_LLAMA`'s
    shape with ``overrides``, its vocabulary and special ids the tokenizer's (for timing:
    its generations are noise and rarely stop before ``max_new_tokens``)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    known = LlamaConfig().to_dict()
    unknown = sorted(set(overrides or {}) - set(known))
    if unknown:  # LlamaConfig would keep them silently
        raise BenchError(f"--config: unknown Llama config field(s) {', '.join(unknown)}")
    cfg = {**RANDOM_LLAMA, **(overrides or {})}
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    try:
        config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=eos, pad_token_id=pad, **cfg)
    except Exception as e:  # transformers / huggingface_hub validation errors
        raise BenchError(f"--config-model: bad Llama config: {str(e).splitlines()[0]}") from e
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.eval()
    return model


def load_model_factory(args: argparse.Namespace, data: Any, family: str) -> tuple[Callable[[], Any], dict[str, Any]]:
    """A function giving a fresh :class:`ModelBundle` per path, and a description of the model."""
    from bench import models

    path, _ = models.resolve(args.model, data, family)
    if not args.config_model:
        first = [models.load_bundle(path, name=args.model)]  # counted here, used by the first path
        n = sum(p.numel() for p in first[0].module.parameters())

        def load() -> Any:
            return first.pop() if first else models.load_bundle(path, name=args.model)

        return load, {"model": args.model, "path": str(path), "parameters": n}

    from transformers import AutoTokenizer

    from bench.model_bundle import ModelBundle
    from bench.prompts import from_tokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    overrides = parse_overrides(args.config)
    t0 = time.perf_counter()
    master = ModelBundle(build_random_llama(tok, overrides, args.seed), tok, from_tokenizer(tok),
                         name="random-llama")
    n = sum(p.numel() for p in master.module.parameters())
    print(f"built a random Llama of {n / 1e6:.1f}M parameters in {time.perf_counter() - t0:.1f} s "
          f"(tokenizer and prompt of {args.model})", flush=True)
    return (lambda: copy.deepcopy(master)), {
        "model": f"random Llama ({args.model} tokenizer)", "config": {**RANDOM_LLAMA, **overrides},
        "parameters": n, "seed": args.seed}


def vllm_available() -> bool:
    from bench.backends.vllm import import_vllm

    try:
        import_vllm()
    except BenchError:
        return False
    return True


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", help="the TOFU data folder (or its parent); default $BENCH_DATA_DIR / the hub")
    p.add_argument("--task", help="default: tofu-forget01 (tofu-forget10 with --config-model)")
    p.add_argument("--model", default="smollm2-135m",
                   help="alias, directory or hub id (with --config-model: whose tokenizer to use)")
    p.add_argument("--limit", type=int, help="first N items of each eval set")
    p.add_argument("--paths", default=",".join(x for x in PATHS if x != "naive-bs8"),
                   help=f"comma-separated, from {', '.join(PATHS)} (default: all but naive-bs8)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--batch-size", type=int, default=32, help="naive batches (the field's 32)")
    p.add_argument("--slots", type=int, default=128, help="fast generation: live rows of continuous batching")
    p.add_argument("--token-budget", type=int,
                   help="fast likelihood batches (padded tokens; default: the hf backend's, 2048 on CPU)")
    p.add_argument("--config-model", action="store_true",
                   help="time a randomly initialised 1B-class Llama instead of --model's weights")
    p.add_argument("--config", default="", help="overrides of the random Llama's config: key=value,...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--vllm-dtype", default="float32", help="dtype of the vLLM engine")
    p.add_argument("--json", help="write every figure to this file")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="skip each path's untimed warm-up on one item per set (see warm_up_sets)")
    args = p.parse_args(argv)
    args.paths = [s.strip() for s in args.paths.split(",") if s.strip()]
    bad = [s for s in args.paths if s not in PATHS]
    if bad or not args.paths:
        p.error(f"--paths: unknown {', '.join(bad) or '(none given)'}; choose from {', '.join(PATHS)}")
    args.paths = [s for s in PATHS if s in args.paths]  # canonical order: naive first
    if args.task is None:
        args.task = "tofu-forget10" if args.config_model else "tofu-forget01"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return _main(args)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    import torch

    from bench.provenance import versions
    from bench.run import RunSpec, load_task

    if args.device == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda: no CUDA device is available")
    if args.threads is not None:
        if args.threads < 1:
            raise BenchError(f"--threads must be ≥ 1 (got {args.threads})")
        torch.set_num_threads(args.threads)
    task, data = load_task(RunSpec(task=args.task, data_dir=args.data_dir, limit=args.limit))
    sets = data.eval_sets
    make_bundle, model_info = load_model_factory(args, data, task.family)

    skipped: dict[str, str] = {}
    paths = list(args.paths)
    vllm_paths = [p for p in paths if p.startswith("vllm")]
    if vllm_paths:
        if args.device == "cpu":
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            n = min(cores, args.threads or cores)
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0" if n == 1 else f"0-{n - 1}")
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        if not vllm_available():
            print(f"{', '.join(vllm_paths)}: vllm not installed, skipped", flush=True)
            for p in vllm_paths:
                skipped[p] = "vllm not installed, skipped"
                paths.remove(p)
    sizes = {es.name: len(es.items) for es in sets}
    print(f"{args.task} ({', '.join(f'{k} {v}' for k, v in sizes.items())}), {model_info['model']} "
          f"({model_info['parameters'] / 1e6:.1f}M parameters), {args.device}, "
          f"{torch.get_num_threads()} threads", flush=True)

    results: list[PathResult] = []
    for path in paths:
        r = run_path(path, make_bundle, sets, device=args.device, batch_size=args.batch_size,
                     token_budget=args.token_budget, slots=args.slots, vllm_dtype=args.vllm_dtype,
                     progress=False if args.no_progress else None, warmup=args.warmup)
        results.append(r)
        print(format_path(r), flush=True)
    if not results:
        raise BenchError("no path ran")

    ref = next((r for r in results if r.name == "naive"), results[0])
    comparisons = [compare(ref, r) for r in results if r is not ref]
    by_name = {r.name: r for r in results}
    if "fast-bf16" in by_name and "fast" in by_name:
        comparisons.append(compare(by_name["fast"], by_name["fast-bf16"]))
    ups = speedups(results, ref)
    print()
    print(format_report(results, comparisons, ups, ref.name, skipped), flush=True)

    if args.json:
        figures = {
            "command": " ".join(["python", "benchmarks/eval_speed.py", *sys.argv[1:]]),
            "task": args.task, "limit": args.limit, "items": sizes, "device": args.device,
            "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
            "cpu_threads": torch.get_num_threads(), "batch_size": args.batch_size,
            "token_budget": args.token_budget, "slots": args.slots, "model": model_info, "versions": versions(),
            "reference": ref.name, "paths": {r.name: r.to_dict() for r in results},
            "skipped": skipped, "speedups": ups, "comparisons": comparisons,
        }
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(figures, indent=2, default=str) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
