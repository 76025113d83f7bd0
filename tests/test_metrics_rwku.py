"""RWKU: ROUGE-L recall with the `rouge` package (not rouge_score) and fluency entropy."""

from __future__ import annotations

import math

import pytest

from bench.errors import BenchError
from bench.items import Item
from bench.metrics.base import EvalContext
from bench.metrics.rouge import RougeL
from bench.metrics.rwku import RWKUFluency, RWKURougeL, fluency_value, ngram_entropy, word_tokenize
from bench.prompts import PromptConfig
from bench.requests import GenerateResponse

CTX = EvalContext(PromptConfig(style="plain"), max_new_tokens=30, stop=("\n",))


def gen(text):
    return [GenerateResponse(text, 0)]


def test_rouge_package_recall_golden_and_not_rouge_score():
    m = RWKURougeL()
    item = Item("l1/0", "q", "the cat sat on the mat")
    # the rouge package's summary-level ROUGE-L divides by the *distinct* reference words:
    # LCS 3 / |{the, cat, sat, on, mat}| = 0.6, where rouge_score gives 3 / 6 = 0.5
    assert m.score(item, gen("the cat sat"), CTX) == pytest.approx(0.6)
    assert RougeL(use_stemmer=False).score(item, gen("the cat sat"), CTX) == pytest.approx(0.5)
    # case-sensitive and punctuation-sensitive: rouge_score (lowercased, [a-z0-9]) says 1.0
    caps = Item("l1/1", "q", "Paris")
    assert m.score(caps, gen("paris"), CTX) == 0.0
    assert RougeL(use_stemmer=False).score(caps, gen("paris"), CTX) == 1.0
    assert m.score(Item("l1/2", "q", "Joe Biden"), gen("Joe Biden,"), CTX) == pytest.approx(0.5)
    # empty answer -> NOANSWER (0 unless the reference says NOANSWER); "..." -> 0 (rouge would raise)
    assert m.score(item, gen(""), CTX) == 0.0
    assert m.score(Item("x", "q", "NOANSWER"), gen("  "), CTX) == 1.0
    assert m.score(item, gen("..."), CTX) == 0.0
    with pytest.raises(BenchError, match="no word"):
        m.score(Item("x", "q", "."), gen("a"), CTX)


def test_rouge_package_mean_equals_rwku_avg():
    from rouge import Rouge

    hyps, refs = ["a b", "c d e", "x"], ["a b c", "c e", "y z"]
    want = Rouge().get_scores(hyps, refs, avg=True)["rouge-l"]["r"]
    m = RWKURougeL()
    vals = [m.score(Item(str(i), "q", r), gen(h), CTX) for i, (h, r) in enumerate(zip(hyps, refs))]
    assert m.aggregate(vals) == pytest.approx(want)


def test_fluency_golden():
    # tokens a b a b: bigrams (a,b) x2, (b,a) x1 -> H2 = H(2/3, 1/3); trigrams 2 distinct -> H3 = 1
    h2 = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert ngram_entropy(["a", "b", "a", "b"], 2) == pytest.approx(h2)
    assert fluency_value(["a", "b", "a", "b"]) == pytest.approx((2 / 3 * h2 + 4 / 3 * 1.0) / 2)
    assert fluency_value(["a"]) == 0.0 and fluency_value([]) == 0.0  # no n-gram
    m = RWKUFluency(tokenizer="punkt-untrained")
    assert m.score(Item("f", "q", ""), gen("a b a b"), CTX) == pytest.approx((2 / 3 * h2 + 4 / 3) / 2)
    assert m.score(Item("f", "q", ""), gen(""), CTX) == 0.0


def test_word_tokenize_offline_twin():
    # the untrained Punkt + NLTKWordTokenizer splits sentence-final periods like word_tokenize
    assert word_tokenize("Hello world. It is fine, isn't it?", "punkt-untrained") == [
        "Hello", "world", ".", "It", "is", "fine", ",", "is", "n't", "it", "?"]
    m = RWKUFluency()
    assert m.tokenizer in ("punkt", "punkt-untrained")
    if m.tokenizer == "punkt":  # where the data is installed, the two agree on plain text
        text = "The model answered. It repeated itself, then stopped."
        assert word_tokenize(text, "punkt") == word_tokenize(text, "punkt-untrained")
    with pytest.raises(BenchError, match="tokenizer"):
        RWKUFluency(tokenizer="spacy")
