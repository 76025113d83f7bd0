"""The hf backend: fast == naive == direct computation; generation identical to
``model.generate``; stop strings, EOS and max_new_tokens honoured."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from bench.backends.base import Backend
from bench.backends.hf import HFBackend
from bench.backends.hf_generate import GenItem, RowState
from bench.errors import BenchError
from bench.model_bundle import ModelBundle, tokenize_pair
from bench.registry import BACKENDS
from bench.requests import (
    Generate,
    GenerateResponse,
    LogLikelihood,
    LogLikelihoodResponse,
    TokenStats,
    TokenStatsResponse,
)

Q1 = "<s>Question: Who wrote the book?\nAnswer:"
Q2 = "<s>Question: Where was the author born?\nAnswer:"
Q3 = "<s>Q"


def _score_requests():
    reqs = []
    for q in (Q1, Q2, Q3):
        for a in (" The book was written by Basil Mahfouz.</s>", " Kuwait City.</s>", " The",
                  " The quick brown fox jumps over the lazy dog. 0123456789</s>"):
            reqs.append(LogLikelihood(q, a))
    reqs += [TokenStats(Q1, " Kuwait City.</s>"), TokenStats(Q3, " Paris is the capital"),
             LogLikelihood(Q2, " Kuwait City.</s>"),  # duplicate
             LogLikelihood(Q1, ""),  # no continuation tokens
             TokenStats(Q2, "</s>")]
    return reqs


def _close(a, b, tol=1e-5):
    assert len(a) == len(b)
    assert all(abs(x - y) <= tol for x, y in zip(a, b)), max(abs(x - y) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def lively(tiny_bundle, liven):
    """The tiny model with larger random weights: varied, non-degenerate greedy outputs."""
    model = liven(copy.deepcopy(tiny_bundle.module), 1)
    return ModelBundle(model, tiny_bundle.tokenizer, tiny_bundle.prompt, name="tiny-lively")


def test_registered_as_hf():
    assert BACKENDS.get("hf") is HFBackend and issubclass(HFBackend, Backend)


def test_bad_options_raise(tiny_bundle):
    with pytest.raises(BenchError, match="mode"):
        HFBackend(tiny_bundle, mode="quick")
    with pytest.raises(BenchError, match="dtype"):
        HFBackend(tiny_bundle, dtype="float16")
    with pytest.raises(BenchError, match="token_budget"):
        HFBackend(tiny_bundle, token_budget=0)


@pytest.mark.parametrize("budget", [8, 64, 8192])
def test_fast_equals_naive_likelihoods(lively, budget):
    reqs = _score_requests()
    fast = HFBackend(lively, mode="fast", token_budget=budget).answer(reqs)
    naive = HFBackend(lively, mode="naive", batch_size=3).answer(reqs)
    assert len(fast) == len(naive) == len(reqs)
    for r, f, n in zip(reqs, fast, naive):
        assert type(f) is type(n)
        assert type(f) is (TokenStatsResponse if isinstance(r, TokenStats) else LogLikelihoodResponse)
        _close(f.token_logprobs, n.token_logprobs)
        assert f.is_greedy == n.is_greedy
        if isinstance(r, TokenStats):
            _close(f.mu, n.mu)
            _close(f.var, n.var)
            _close(f.entropy, n.entropy)
    assert fast[-3] == fast[5]  # the duplicate answered identically
    empty = fast[-2]
    assert empty.token_logprobs == () and empty.num_tokens == 0 and empty.mean_nll == math.inf


def test_likelihood_and_stats_match_direct_computation(lively):
    """Hand computation in float64 from one full forward pass."""
    tok, model = lively.tokenizer, lively.module
    prompt, cont = Q1, " Kuwait City.</s>"
    p, c = tokenize_pair(tok, prompt, cont)
    assert len(c) >= 2
    with torch.no_grad():
        logits = model(torch.tensor([p + c])).logits[0].double()
    logp = torch.log_softmax(logits, -1)
    rows = range(len(p) - 1, len(p) + len(c) - 1)
    want_lp = [logp[i, t].item() for i, t in zip(rows, c)]
    want_greedy = [int(logits[i].argmax()) == t for i, t in zip(rows, c)]
    probs = logp.exp()
    want_mu = [(probs[i] * logp[i]).sum().item() for i in rows]
    want_var = [(probs[i] * logp[i] ** 2).sum().item() - m * m for i, m in zip(rows, want_mu)]
    ll, ts = HFBackend(lively).answer([LogLikelihood(prompt, cont), TokenStats(prompt, cont)])
    for resp in (ll, ts):
        _close(resp.token_logprobs, want_lp)
        assert list(resp.is_greedy) == want_greedy
        assert resp.num_tokens == len(c)
        assert resp.sum_logprob == pytest.approx(sum(want_lp), abs=1e-4)
    _close(ts.mu, want_mu)
    _close(ts.var, want_var)
    _close(ts.entropy, [-m for m in want_mu])
    assert all(v >= 0 for v in ts.var)


def test_single_token_continuation(lively):
    tok = lively.tokenizer
    p, c = tokenize_pair(tok, Q2, " The")
    assert len(c) == 1
    with torch.no_grad():
        logp = torch.log_softmax(lively.module(torch.tensor([p])).logits[0, -1].double(), -1)
    (resp,) = HFBackend(lively).answer([LogLikelihood(Q2, " The")])
    assert resp.token_logprobs == pytest.approx([logp[c[0]].item()], abs=1e-5)


def test_empty_prompt_is_scored_after_the_prefix_token(lively):
    """An empty prompt (document format, no BOS) scores from the first token, given the
    prefix token (BOS, else EOS), as lm-evaluation-harness's rolling loglikelihood."""
    tok = lively.tokenizer
    prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    prefix_text = tok.decode([prefix])
    text = " the quick brown fox"
    empty, explicit = HFBackend(lively).answer([LogLikelihood("", text), LogLikelihood(prefix_text, text)])
    assert empty.num_tokens == len(tok(text, add_special_tokens=False)["input_ids"])
    _close(empty.token_logprobs, explicit.token_logprobs)


def test_bfloat16_runs_and_stays_close(lively):
    bundle = ModelBundle(copy.deepcopy(lively.module), lively.tokenizer, lively.prompt)
    reqs = _score_requests()[:6]
    b16 = HFBackend(bundle, dtype="bfloat16").answer(reqs)
    f32 = HFBackend(lively).answer(reqs)
    assert next(bundle.module.parameters()).dtype == torch.bfloat16
    for a, b in zip(b16, f32):
        _close(a.token_logprobs, b.token_logprobs, tol=0.1)


def test_settings_and_engines(tiny_bundle):
    b = HFBackend(tiny_bundle, mode="naive", batch_size=4)
    s = b.settings()
    assert s["backend"] == "hf" and s["mode"] == "naive" and s["dtype"] == "float32"
    assert s["torch"] == torch.__version__ and "transformers" in s
    assert tiny_bundle.tokenizer.eos_token_id in s["eos_token_ids"]
    cs = b.cache_settings()
    assert "mode" not in cs and "batch_size" not in cs and cs["dtype"] == "float32"
    assert set(b.engines()) == {"loglikelihood", "token_stats", "generate"}
    b.close()
    b.close()
    with pytest.raises(BenchError, match="close"):
        b.answer([LogLikelihood(Q1, " x")])


# --------------------------------------------------------------------------- generation


def _gen_requests():
    reqs = []
    for k in range(14):
        prompt = (Q1, Q2, Q3, "<s>The quick brown fox")[k % 4] + " x" * (k // 4)
        stop = ("e",) if k % 3 == 0 else ()
        reqs.append(Generate(prompt, max_new_tokens=(3, 9, 17, 30)[k % 4], stop=stop))
    reqs.append(Generate(Q1, max_new_tokens=0))
    reqs.append(reqs[2])  # duplicate
    return reqs


def _generate_bs1(bundle, req, eos):
    """``model.generate`` greedy, batch size 1: the reference token stream."""
    ids = torch.tensor([bundle.tokenizer(req.prompt, add_special_tokens=False)["input_ids"]])
    out = bundle.module.generate(ids, max_new_tokens=req.max_new_tokens, do_sample=False,
                                 eos_token_id=sorted(eos), pad_token_id=bundle.tokenizer.pad_token_id)
    return out[0, ids.shape[1]:].tolist()


def test_generation_fast_equals_naive_equals_generate_bs1(lively):
    reqs = _gen_requests()
    fast = HFBackend(lively, mode="fast", batch_size=3).answer(reqs)
    naive = HFBackend(lively, mode="naive", batch_size=4).answer(reqs)
    bs1 = HFBackend(lively, mode="naive", batch_size=1).answer(reqs)
    assert fast == naive == bs1
    assert all(isinstance(r, GenerateResponse) for r in fast)
    eos = set(HFBackend(lively).settings()["eos_token_ids"])
    decode = lively.tokenizer.decode
    for req, resp in zip(reqs, fast):
        assert resp.num_tokens <= req.max_new_tokens
        if req.max_new_tokens == 0:
            assert resp == GenerateResponse("", 0, "length")
            continue
        toks = _generate_bs1(lively, req, eos)
        kept = toks[:resp.num_tokens]
        assert not eos & set(kept)
        if resp.finish_reason == "length":
            assert resp.num_tokens == req.max_new_tokens
            assert resp.text == decode(kept, skip_special_tokens=True).strip()
        elif resp.finish_reason == "eos":
            assert toks[resp.num_tokens] in eos
        else:
            assert resp.finish_reason == "stop" and req.stop
            assert req.stop[0] in decode(kept, skip_special_tokens=True)
            assert req.stop[0] not in decode(kept[:-1], skip_special_tokens=True)
            assert req.stop[0] not in resp.text
    reasons = {r.finish_reason for r in fast}
    assert reasons == {"length", "stop", "eos"}


def test_generation_config_eos_ids_end_rows(lively):
    """An id from the model's generation config ends a row like the tokenizer's EOS."""
    req = Generate(Q1, max_new_tokens=12)
    (free,) = HFBackend(lively).answer([req])
    assert free.finish_reason == "length" and free.num_tokens == 12
    toks = _generate_bs1(lively, req, {lively.tokenizer.eos_token_id})
    stop_tok = toks[4]  # make the 5th generated token an EOS id (if it first occurs there)
    first = toks.index(stop_tok)
    bundle = ModelBundle(copy.deepcopy(lively.module), lively.tokenizer, lively.prompt)
    bundle.module.generation_config.eos_token_id = [lively.tokenizer.eos_token_id, stop_tok]
    for mode in ("fast", "naive"):
        (resp,) = HFBackend(bundle, mode=mode).answer([req])
        assert resp.finish_reason == "eos" and resp.num_tokens == first
        assert resp.text == lively.tokenizer.decode(toks[:first], skip_special_tokens=True).strip()


def test_generation_empty_prompt_is_an_error(tiny_bundle):
    with pytest.raises(BenchError, match="empty prompt"):
        HFBackend(tiny_bundle).answer([Generate("", 5)])


def _row(max_new, stop=(), eos=frozenset({0})):
    return RowState(GenItem((1,), max_new, stop), eos, lambda toks: "".join("ab\nc"[t - 1] for t in toks))


def test_rowstate_eos_not_counted():
    row = _row(10)
    assert not row.push(1) and not row.push(2)
    assert row.push(0)
    r = row.result()
    assert (r.text, r.num_tokens, r.finish_reason) == ("ab", 2, "eos")


def test_rowstate_length_and_strip():
    row = _row(3)
    assert not row.push(3) and not row.push(1)
    assert row.push(4)
    r = row.result()
    assert (r.text, r.num_tokens, r.finish_reason) == ("ac", 3, "length")  # "\nac" stripped
    row = _row(2)
    row.push(3)
    row.push(3)
    assert row.result().text == ""


def test_rowstate_stop_cuts_at_earliest_stop():
    row = _row(10, stop=("c", "\n"))
    assert not row.push(1) and not row.push(2)
    assert row.push(3)  # "ab\n": stop found at the third token
    r = row.result()
    assert (r.text, r.num_tokens, r.finish_reason) == ("ab", 3, "stop")
    # a stop completed by a later token after an earlier-matching string
    row = _row(10, stop=("bc", "a"))
    assert row.push(1)  # "a" matches at once
    assert row.result().text == "" and row.result().num_tokens == 1


def test_fast_paths_do_not_fall_back_to_naive(lively, monkeypatch):
    """On a plain Llama the KV-cache paths run (the naive fallback is for exotic caches)."""
    import bench.backends.hf_generate as hg
    import bench.backends.hf_loglik as hl

    def boom(*a, **k):
        raise AssertionError("fell back to the naive path")

    monkeypatch.setattr(hl, "score_naive", boom)
    monkeypatch.setattr(hg, "generate_naive", boom)
    b = HFBackend(lively, token_budget=40, batch_size=2)
    assert len(b.answer(_score_requests() + _gen_requests())) == len(_score_requests()) + len(_gen_requests())


def test_uneditable_cache_falls_back_to_naive_with_same_answers(lively, monkeypatch):
    """A model whose KV cache cannot be edited (e.g. linear attention) still gets answers."""
    from bench.backends import kv

    want = HFBackend(lively, mode="naive").answer(_score_requests() + _gen_requests())
    monkeypatch.setattr(kv, "supported", lambda cache, max_len: False)
    got = HFBackend(lively, mode="fast", batch_size=3).answer(_score_requests() + _gen_requests())
    assert got[len(_score_requests()):] == want[len(_score_requests()):]
    for a, b in zip(got[:len(_score_requests())], want):
        _close(a.token_logprobs, b.token_logprobs)


def test_sliding_window_cache_support_depends_on_length(lively):
    """A sliding-window layer is editable only while nothing was cropped from it."""
    from transformers.cache_utils import DynamicCache, DynamicSlidingWindowLayer

    from bench.backends import kv

    cache = DynamicCache()
    assert not kv.supported(cache, 10)  # no layers yet
    with torch.no_grad():
        out = lively.module(torch.tensor([[1, 5, 6]]), use_cache=True)
    assert kv.supported(out.past_key_values, 100)
    layer = DynamicSlidingWindowLayer(sliding_window=16)
    layer.update(torch.zeros(1, 1, 3, 2), torch.zeros(1, 1, 3, 2))
    sw = DynamicCache()
    sw.layers = [layer]
    assert kv.supported(sw, 10) and not kv.supported(sw, 15)
    assert kv.seq_len(kv.left_pad(sw, 2)) == 5 and kv.left_pad(sw, 2).layers[0].cumulative_length == 5
    assert kv.seq_len(kv.drop_leading(sw, 1)) == 2
    two = kv.select_rows(sw, torch.tensor([0, 0]))
    assert two.layers[0].keys.shape[0] == 2 and sw.layers[0].keys.shape[0] == 1  # original untouched


def test_generation_slots_capped_by_kv_memory(tiny_bundle):
    from bench.backends import kv
    from bench.backends.hf import _kv_slots

    # tiny: 2 layers x (K + V) x 4 KV heads x head_dim 16 x 4 bytes
    assert kv.bytes_per_token(tiny_bundle.module) == 2 * 2 * 4 * 16 * 4
    assert _kv_slots(128, 4.0, 46080, 350) == 128  # SmolLM2-135M fp32: 266 rows would fit
    assert _kv_slots(128, 1.0, 1 << 20, 512) == 2  # 1 GiB / (1 MiB x 512)
    assert _kv_slots(128, 0.001, 1 << 20, 512) == 1  # never below one row
    assert _kv_slots(8, 4.0, 0, 512) == 8  # unknown size: no cap
    b = HFBackend(tiny_bundle, slots=64, kv_cache_gib=1024 * 300 * 3 / (1 << 30), device="cpu")
    assert b.gen_slots([GenItem(tuple(range(100)), 200)]) == 3
    assert b.gen_slots([]) == 64
    with pytest.raises(BenchError, match="kv_cache_gib"):
        HFBackend(tiny_bundle, kv_cache_gib=0)


def test_a_small_cpu_model_answers_on_one_thread_and_torch_is_restored(tiny_bundle, monkeypatch):
    import bench.threads as threads

    seen = []
    b = HFBackend(ModelBundle(copy.deepcopy(tiny_bundle.module), tiny_bundle.tokenizer, tiny_bundle.prompt, "t"))
    hook = b.bundle.module.get_decoder().register_forward_pre_hook(lambda m, *a: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        b.answer([LogLikelihood(Q1, " Kuwait City.</s>"), Generate(Q2, max_new_tokens=3)])
        assert seen and set(seen) == {1} and torch.get_num_threads() == 2
        seen.clear()
        monkeypatch.setattr(threads, "SMALL_MODEL_PARAMS", 10)  # now the model counts as large
        b.answer([LogLikelihood(Q2, " Kuwait City.</s>")])
        assert set(seen) == {2}
    finally:
        hook.remove()
        torch.set_num_threads(before)
