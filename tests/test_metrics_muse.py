"""MUSE VerbMem / KnowMem: ROUGE-L F1 without stemming, MUSE's reference cut and output cut."""

from __future__ import annotations

import pytest

from bench.items import Item
from bench.metrics.base import EvalContext
from bench.metrics.muse import (
    KNOWMEM_CUTS,
    KnowMem,
    VerbMem,
    cut_reference,
    prefix_before,
    rouge_l_f1,
)
from bench.prompts import PromptConfig
from bench.requests import Generate, GenerateResponse

PC = PromptConfig(style="plain", bos="", eos="</s>")


def gen(text):
    return [GenerateResponse(text, 0)]


def test_rouge_l_f1_no_stemming_golden():
    # LCS("the cat sat on the mat", "the cat ran on the mat") = 5 of 6 each side -> F1 5/6
    assert rouge_l_f1("the cat sat on the mat", "the cat ran on the mat") == pytest.approx(5 / 6)
    # precision != recall: ref 4 tokens, output 2 matching: P = 1, R = 0.5 -> F1 2/3 (recall would be 0.5)
    assert rouge_l_f1("a b c d", "a b") == pytest.approx(2 / 3)
    # no stemming: "running" vs "runs" do not match (a stemmer maps both to "run")
    assert rouge_l_f1("he runs", "he running") == pytest.approx(0.5)
    assert rouge_l_f1("he runs", "he running", use_stemmer=True) == pytest.approx(1.0)
    assert rouge_l_f1("anything", "") == 0.0


def test_verbmem_cuts_reference_to_max_new_tokens(tiny_bundle):
    tok = tiny_bundle.tokenizer
    gt = "The quick brown fox jumps over the lazy dog. " * 6
    ctx = EvalContext(PC, tokenizer=tok, max_new_tokens=8, format="raw")
    short = cut_reference(tok, gt, 8)
    ids = tok(gt, add_special_tokens=True)["input_ids"][:8]
    assert short == tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True)
    assert len(short) < len(gt)
    m = VerbMem()
    item = Item("v/0", "Once upon a time", gt)
    assert m.requests(item, ctx) == [Generate("Once upon a time", 8, ())]
    # output = exactly the cut reference -> 1; against the whole gt it would be far lower
    assert m.score(item, gen(short), ctx) == pytest.approx(1.0)
    assert VerbMem(variant="open-unlearning").score(item, gen(short), ctx) < 0.5


def test_knowmem_output_cut():
    assert prefix_before("Paris\n\nQuestion: next", KNOWMEM_CUTS) == "Paris"
    assert prefix_before("Paris\nQuestion: x", KNOWMEM_CUTS) == "Paris"
    assert prefix_before("Paris Question: x", KNOWMEM_CUTS) == "Paris "
    # MUSE's sequential splits = cut at the earliest of the three markers
    assert prefix_before("a Question: b\n\nc", KNOWMEM_CUTS) == "a "
    ctx = EvalContext(PC, max_new_tokens=32, stop=("\n\n",), format="raw")
    item = Item("k/0", "Question: Who?\nAnswer: ", "Boris Johnson")
    assert KnowMem().score(item, gen("Boris Johnson Question: What else"), ctx) == pytest.approx(1.0)
    assert KnowMem().score(item, gen("Johnson"), ctx) == pytest.approx(2 / 3)
    assert KnowMem().score(item, gen(""), ctx) == 0.0
