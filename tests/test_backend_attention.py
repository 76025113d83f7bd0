"""Grouped-query attention without repeat_kv: same numbers as stock sdpa, config restored."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch

from bench.backends.attention import NAME, gqa_attention
from bench.backends.hf import HFBackend
from bench.model_bundle import ModelBundle
from bench.requests import Generate, LogLikelihood, TokenStats


@pytest.fixture(scope="module")
def gqa_bundle(tiny_bundle, liven):
    """A tiny Llama with 4 query heads sharing 2 KV heads, with lively random weights."""
    from bench.tiny import build_model

    model = liven(build_model(tiny_bundle.tokenizer, heads=4, kv_heads=2, seed=3), 5)
    return ModelBundle(model, tiny_bundle.tokenizer, tiny_bundle.prompt, name="tiny-gqa")


def _padded_batch(tok):
    texts = ["<s>Question: Who wrote the book?\nAnswer:", "<s>Q", "<s>Where was the author born? He"]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    return enc["input_ids"], enc["attention_mask"]


def test_gqa_forward_matches_stock_sdpa(gqa_bundle):
    model = gqa_bundle.module
    assert model.config._attn_implementation == "sdpa"
    ids, mask = _padded_batch(gqa_bundle.tokenizer)
    with torch.inference_mode():
        ref = model(input_ids=ids, attention_mask=mask).logits
        no_mask_ref = model(input_ids=ids).logits
        with gqa_attention(model) as applied:
            assert applied and model.config._attn_implementation == NAME
            got = model(input_ids=ids, attention_mask=mask).logits
            no_mask = model(input_ids=ids).logits  # the causal (is_causal) branch
    assert model.config._attn_implementation == "sdpa"  # restored
    real = mask.bool()
    assert torch.equal(got[real], ref[real])  # bit-identical, as the module docstring says
    assert torch.equal(no_mask, no_mask_ref)


def test_gqa_decoding_step_with_cache_matches(gqa_bundle):
    model = gqa_bundle.module
    ids, mask = _padded_batch(gqa_bundle.tokenizer)
    step_ids = torch.tensor([[5], [6], [7]])
    step_mask = torch.cat([mask, torch.ones(3, 1, dtype=mask.dtype)], 1)
    outs = []
    for use in (False, True):
        with torch.inference_mode(), (gqa_attention(model) if use else contextlib.nullcontext()):
            pre = model(input_ids=ids, attention_mask=mask, use_cache=True)
            step = model(input_ids=step_ids, attention_mask=step_mask,
                         past_key_values=pre.past_key_values, use_cache=True)
            outs.append(step.logits)
    assert torch.equal(outs[0], outs[1])


def test_context_restores_config_on_error(gqa_bundle):
    model = gqa_bundle.module
    with pytest.raises(RuntimeError), gqa_attention(model):
        raise RuntimeError("boom")
    assert model.config._attn_implementation == "sdpa"


def test_not_applied_without_grouped_heads_or_sdpa(tiny_bundle, gqa_bundle):
    with gqa_attention(tiny_bundle.module) as applied:  # 4 heads, 4 KV heads
        assert not applied
    assert tiny_bundle.module.config._attn_implementation == "sdpa"
    cfg = gqa_bundle.module.config
    cfg._attn_implementation = "eager"
    try:
        with gqa_attention(gqa_bundle.module) as applied:
            assert not applied and cfg._attn_implementation == "eager"
    finally:
        cfg._attn_implementation = "sdpa"


def test_hf_fast_equals_naive_on_a_gqa_model(gqa_bundle):
    q = "<s>Question: Who wrote the book?\nAnswer:"
    reqs = [LogLikelihood(q, " The book was written by Basil Mahfouz.</s>"), LogLikelihood(q, " Kuwait"),
            TokenStats("<s>Q", " Paris is the capital"),
            Generate(q, 12), Generate("<s>Where", 9), Generate("<s>Q", 15)]
    out = {}
    for mode in ("naive", "fast"):
        b = ModelBundle(copy.deepcopy(gqa_bundle.module), gqa_bundle.tokenizer, gqa_bundle.prompt)
        out[mode] = HFBackend(b, mode=mode, batch_size=2, slots=2, device="cpu").answer(reqs)
    for a, b in zip(out["naive"], out["fast"]):
        if hasattr(a, "token_logprobs"):
            assert max((abs(x - y) for x, y in zip(a.token_logprobs, b.token_logprobs)), default=0) <= 1e-5
        else:
            assert a == b
