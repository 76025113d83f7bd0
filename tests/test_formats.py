"""Per-set formats: model / raw / document prompts, rolling windows past the context,
stop strings, few-shot prompts rendered into the item, string-array data files."""

from __future__ import annotations

import math

import pytest

from bench.backends.hf import HFBackend
from bench.backends.rolling import windows
from bench.evaluate import context_for, plan
from bench.items import EvalSet, Item, MetricSpec, Split, split_format
from bench.prompts import default_bos
from bench.requests import Generate, LogLikelihood


def test_windows_fit_in_one():
    assert windows([1, 2], [3, 4], 8, prefix=0) == [((1, 2), (3, 4))]


def test_windows_empty_prompt_gets_prefix():
    assert windows([], [5, 6, 7], 8, prefix=9) == [((9,), (5, 6, 7))]


def test_windows_disjoint_like_lm_eval():
    # max_length 4: first window = prefix + 3 tokens; then windows of 4 given 1 token
    got = windows([], list(range(10, 20)), 4, prefix=0)
    assert got == [((0,), (10, 11, 12)), ((12,), (13, 14, 15, 16)), ((16,), (17, 18, 19))]
    scored = [t for _, c in got for t in c]
    assert scored == list(range(10, 20))  # every token exactly once, in order
    assert all(len(p) + len(c) - 1 <= 4 for p, c in got)  # each input fits the context


def test_windows_long_prompt_keeps_its_end():
    got = windows(list(range(10)), [50, 51], 4, prefix=0)
    assert got[0] == ((7, 8, 9), (50,))
    assert got[1] == ((50,), (51,))


def test_windows_reject_tiny_context():
    with pytest.raises(ValueError):
        windows([1], [2], 1, prefix=0)


def test_rolling_scores_equal_full_context_when_it_fits(tiny_bundle, liven):
    """A document split into windows scores every token once; with a context large
    enough it equals the unsplit score, and windows change only the conditioning."""
    import copy

    from bench.model_bundle import ModelBundle

    b = ModelBundle(copy.deepcopy(tiny_bundle.module), tiny_bundle.tokenizer, tiny_bundle.prompt)
    liven(b.module, 0)
    text = " ".join(["alpha beta gamma delta"] * 6)
    n = len(b.tokenizer(text, add_special_tokens=False)["input_ids"])
    full = HFBackend(b).answer([LogLikelihood("", text)])[0]
    small = HFBackend(b, max_length=8).answer([LogLikelihood("", text)])[0]
    assert full.num_tokens == small.num_tokens == n
    assert math.isclose(full.token_logprobs[0], small.token_logprobs[0], abs_tol=1e-5)
    assert any(abs(a - c) > 1e-4 for a, c in zip(full.token_logprobs, small.token_logprobs))
    naive = HFBackend(b, max_length=8, mode="naive").answer([LogLikelihood("", text)])[0]
    for a, c in zip(small.token_logprobs, naive.token_logprobs):
        assert math.isclose(a, c, abs_tol=1e-5)


def _set(fmt, items, **kw):
    return EvalSet("s", items, [MetricSpec("rouge_l"), MetricSpec("probability")], format=fmt, **kw)


def test_raw_format_is_verbatim(tiny_bundle):
    item = Item("s/0", "The capital of France is", " Paris")
    p = plan(tiny_bundle, [_set("raw", [item], stop=("\n",), max_new_tokens=7)])
    gen = next(r for r in p.requests if isinstance(r, Generate))
    ll = next(r for r in p.requests if isinstance(r, LogLikelihood))
    bos = default_bos(tiny_bundle.tokenizer)
    assert gen.prompt == bos + "The capital of France is"
    assert gen.stop == ("\n",) and gen.max_new_tokens == 7
    assert ll.continuation == " Paris"  # nothing appended (no EOS, no template)


def test_model_format_uses_the_prompt_config(tiny_bundle):
    item = Item("s/0", "Who?", "Me.")
    p = plan(tiny_bundle, [_set("model", [item])])
    ll = next(r for r in p.requests if isinstance(r, LogLikelihood))
    assert ll.prompt == tiny_bundle.prompt.prompt("Who?", tiny_bundle.tokenizer)
    assert ll.continuation == tiny_bundle.prompt.continuation("Me.")


def test_document_format_scores_the_whole_text(tiny_bundle):
    ctx = context_for(tiny_bundle, EvalSet("d", [], [], format="document"))
    item = Item("d/0", "", "A whole article. Two sentences.")
    assert ctx.prompt_for(item) == default_bos(tiny_bundle.tokenizer)
    assert ctx.continuation(item.answer) == item.answer


def test_fewshot_prompt_rendered_by_the_task_reaches_the_model_verbatim(tiny_bundle):
    shots = [("Q1", "A1"), ("Q2", "A2")]
    prompt = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in shots) + "Question: Q3\nAnswer: "
    p = plan(tiny_bundle, [_set("raw", [Item("s/0", prompt, "A3")], stop=("\n\n", "\nQuestion"))])
    gen = next(r for r in p.requests if isinstance(r, Generate))
    assert gen.prompt.endswith("Question: Q3\nAnswer: ") and gen.prompt.count("Question:") == 3
    assert gen.stop == ("\n\n", "\nQuestion")


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown format"):
        EvalSet("x", [], [], format="template")
    with pytest.raises(ValueError, match="unknown format"):
        Split([], format="text")


def test_split_carries_its_format():
    s = Split([Item("a", "", "text")], format="document")
    assert list(s) == [Item("a", "", "text")] and split_format(s) == "document"
    assert split_format([Item("a", "q", "a")]) == "model"


def test_stop_strings_cut_generation(tiny_bundle, liven):
    import copy

    from bench.model_bundle import ModelBundle

    b = ModelBundle(copy.deepcopy(tiny_bundle.module), tiny_bundle.tokenizer, tiny_bundle.prompt)
    liven(b.module, 0)
    free = HFBackend(b).answer([Generate("a b", 12)])[0]
    assert len(free.text) > 2
    stop = free.text[1:3]
    cut = HFBackend(b).answer([Generate("a b", 12, (stop,))])[0]
    assert stop not in cut.text and cut.finish_reason == "stop"
    assert cut.text == free.text.split(stop)[0].strip()  # cut before the first occurrence
