"""Golden values for the TOFU item metrics, from hand-made responses (no model)."""

from __future__ import annotations

import math

import pytest

from bench.errors import BenchError
from bench.items import Item
from bench.metrics.base import EvalContext
from bench.metrics.memorization import ExactMemorization, ExtractionStrength
from bench.metrics.probability import Probability
from bench.metrics.rouge import RougeL
from bench.metrics.truth_ratio import TruthRatio
from bench.prompts import PromptConfig
from bench.registry import METRICS
from bench.requests import (
    Generate,
    GenerateResponse,
    LogLikelihood,
    LogLikelihoodResponse,
)

CTX = EvalContext(PromptConfig(style="plain", bos="<s>", eos="</s>"), max_new_tokens=200, stop=("\n",))
PROMPT = "<s>Question: Where was the author born?\nAnswer:"

ITEM = Item(
    id="q1",
    question="Where was the author born?",
    answer="Kuwait City",
    paraphrased_answer="In Kuwait City",
    perturbed_answers=("Cairo", "Doha", "Paris"),
)


def ll(*probs: float, greedy: tuple[bool, ...] | None = None) -> LogLikelihoodResponse:
    """A response whose tokens have the given probabilities (log-probs = ln p)."""
    lp = tuple(math.log(p) for p in probs)
    return LogLikelihoodResponse(lp, greedy if greedy is not None else (True,) * len(lp))


def flags(*g: bool) -> LogLikelihoodResponse:
    return LogLikelihoodResponse((-1.0,) * len(g), tuple(g))


# ---------------------------------------------------------------- registry and options


def test_registered_with_descriptions():
    for name, cls in [
        ("rouge_l", RougeL),
        ("probability", Probability),
        ("truth_ratio", TruthRatio),
        ("extraction_strength", ExtractionStrength),
        ("exact_memorization", ExactMemorization),
    ]:
        assert METRICS.get(name) is cls
        assert cls.name == name
    assert all(e.description for e in METRICS.entries())


@pytest.mark.parametrize(
    "make, text",
    [
        (lambda: RougeL(kind="precision"), "option kind must be one of 'recall', 'f1'"),
        (lambda: RougeL(use_stemmer="yes"), "option use_stemmer must be true or false"),
        (lambda: Probability(normalized=1), "option normalized must be true or false"),
        (lambda: TruthRatio(mode="both"), "option mode must be one of 'forget', 'retain'"),
        (lambda: TruthRatio(paraphrase_field="question"), "option paraphrase_field"),
    ],
)
def test_bad_options_raise(make, text):
    with pytest.raises(BenchError, match=text):
        make()


def test_options_recorded():
    assert RougeL().options() == {"kind": "recall", "use_stemmer": True}
    assert Probability(normalized=True).options() == {"normalized": True}
    assert TruthRatio(mode="retain", paraphrase_field="answer").options() == {
        "mode": "retain",
        "paraphrase_field": "answer",
    }
    assert ExtractionStrength().options() == {}


def test_missing_fields_name_item_and_field():
    bare = Item(id="x7", question="q", answer="a")
    with pytest.raises(BenchError, match="item 'x7': field 'perturbed_answers' is empty"):
        Probability(normalized=True).requests(bare, CTX)
    with pytest.raises(BenchError, match="item 'x7': field 'paraphrased_answer' is empty"):
        TruthRatio().requests(bare, CTX)


def test_wrong_responses_raise():
    with pytest.raises(BenchError, match="expected 1 response"):
        Probability().score(ITEM, [ll(0.5), ll(0.5)], CTX)
    with pytest.raises(BenchError, match="expected LogLikelihoodResponse"):
        ExactMemorization().score(ITEM, [GenerateResponse("x", 1)], CTX)
    with pytest.raises(BenchError, match="expected GenerateResponse"):
        RougeL().score(ITEM, [ll(0.5)], CTX)


# ---------------------------------------------------------------- requests and reuse


def test_request_shapes():
    assert RougeL().requests(ITEM, CTX) == [Generate(PROMPT, 200, ("\n",))]
    assert Probability().requests(ITEM, CTX) == [LogLikelihood(PROMPT, " Kuwait City</s>")]
    assert TruthRatio().requests(ITEM, CTX) == [
        LogLikelihood(PROMPT, " In Kuwait City</s>"),
        LogLikelihood(PROMPT, " Cairo</s>"),
        LogLikelihood(PROMPT, " Doha</s>"),
        LogLikelihood(PROMPT, " Paris</s>"),
    ]


def test_one_item_metrics_share_requests():
    """Probability (both forms), truth ratio (answer as para), ES and EM ask for the same
    LogLikelihood objects, so a deduping engine runs 1 + 3 forward passes, not 11."""
    metrics = [
        Probability(),
        Probability(normalized=True),
        TruthRatio(mode="retain", paraphrase_field="answer"),
        ExtractionStrength(),
        ExactMemorization(),
    ]
    all_reqs = [r for m in metrics for r in m.requests(ITEM, CTX)]
    assert len(all_reqs) == 1 + 4 + 4 + 1 + 1
    assert len(set(all_reqs)) == 1 + len(ITEM.perturbed_answers)
    answer_req = Probability().requests(ITEM, CTX)[0]
    assert all(m.requests(ITEM, CTX)[0] == answer_req for m in metrics)
    # the paraphrase truth ratio adds exactly one request (the paraphrase)
    with_para = set(all_reqs) | set(TruthRatio().requests(ITEM, CTX))
    assert len(with_para) == len(set(all_reqs)) + 1


def test_engine_roundtrip_with_dedupe():
    """A minimal fake engine: answer the unique requests once, hand each metric its own."""
    answers = {
        LogLikelihood(PROMPT, " Kuwait City</s>"): ll(0.5, 0.5, 0.5, greedy=(True, True, False)),
        LogLikelihood(PROMPT, " Cairo</s>"): ll(0.25, 0.25),
        LogLikelihood(PROMPT, " Doha</s>"): ll(0.25),
        LogLikelihood(PROMPT, " Paris</s>"): ll(0.125, 0.5),  # P̃ = 0.25
    }
    metrics = {
        "p": Probability(),
        "pn": Probability(normalized=True),
        "tr": TruthRatio(mode="retain", paraphrase_field="answer"),
        "es": ExtractionStrength(),
        "em": ExactMemorization(),
    }
    asked = [r for m in metrics.values() for r in m.requests(ITEM, CTX)]
    assert set(asked) == set(answers)
    got = {k: m.score(ITEM, [answers[r] for r in m.requests(ITEM, CTX)], CTX) for k, m in metrics.items()}
    assert got["p"] == pytest.approx(0.5)
    assert got["pn"] == pytest.approx(0.5 / (0.5 + 0.75))
    assert got["tr"] == pytest.approx(0.25 / 0.5)  # r = geo-mean(0.25, 0.25, 0.25) / 0.5
    assert got["es"] == 1.0 and got["em"] == 1.0  # final (EOS) flag dropped


# ---------------------------------------------------------------- probability


def test_probability_plain_is_exp_of_mean_nll_over_all_tokens():
    # tokens 0.5 and 0.125 (the last is the EOS): exp(-mean NLL) = sqrt(0.5 * 0.125) = 0.25
    assert Probability().score(ITEM, [ll(0.5, 0.125)], CTX) == pytest.approx(0.25, abs=1e-15)
    # logprobs -0.5, -1, -1.5: mean NLL 1 -> e^-1
    r = LogLikelihoodResponse((-0.5, -1.0, -1.5), (True, True, True))
    assert Probability().score(ITEM, [r], CTX) == pytest.approx(0.36787944117144233, rel=1e-12)
    assert Probability().score(ITEM, [ll(1.0)], CTX) == 1.0


def test_probability_no_tokens_is_missing_and_left_out():
    m = Probability()
    empty = LogLikelihoodResponse((), ())
    assert m.score(ITEM, [empty], CTX) is None
    assert m.aggregate([0.25, None, 0.75]) == 0.5
    assert m.aggregate([None]) is None


def test_probability_normalized_uses_length_normalised_options():
    m = Probability(normalized=True)
    # P̃: answer 0.5 (two tokens), options 0.25 (1 token), 0.125 (3 tokens), 0.125
    resps = [ll(0.5, 0.5), ll(0.25), ll(0.125, 0.125, 0.125), ll(0.5, 0.03125)]
    # 0.5 / (0.5 + 0.25 + 0.125 + 0.125 + 1e-10) = 0.5 / (1 + 1e-10)
    assert m.score(ITEM, resps, CTX) == pytest.approx(0.49999999995, rel=1e-12)
    # summed sequence probabilities would give 0.25 / (0.25 + 0.25 + 0.125**3 + 0.015625) instead
    assert m.score(ITEM, resps, CTX) != pytest.approx(0.25 / (0.25 + 0.25 + 0.125**3 + 0.015625))


def test_probability_normalized_missing_option_tokens():
    resps = [ll(0.5), ll(0.25), LogLikelihoodResponse((), ()), ll(0.5)]
    assert Probability(normalized=True).score(ITEM, resps, CTX) is None


# ---------------------------------------------------------------- truth ratio


def test_truth_ratio_per_item_is_geometric_mean_false_over_true():
    m = TruthRatio()
    # para P̃ 0.5; perturbed P̃ 0.25, 0.0625 (two tokens of 0.25), 0.125 -> geo-mean 0.125
    resps = [ll(0.5, 0.5), ll(0.25), ll(0.25, 0.25**3), ll(0.125)]
    r = m.score(ITEM, resps, CTX)
    assert r == pytest.approx(0.125 / (0.5 + 1e-10), rel=1e-12)
    assert r == pytest.approx(0.25, rel=1e-9)  # SPEC's R (true/false) = 4
    # the arithmetic mean of the perturbed P̃ would give (0.25 + 0.0625 + 0.125) / 3 / 0.5
    assert r != pytest.approx((0.25 + 0.0625 + 0.125) / 3 / 0.5)


def test_truth_ratio_aggregates():
    values = [0.25, 4.0, None]  # SPEC's R = 4 and 1/4
    # forget: mean(min(r, 1/r)) = (0.25 + 0.25) / 2
    assert TruthRatio(mode="forget").aggregate(values) == pytest.approx(0.25, rel=1e-9)
    # retain: mean(max(0, 1 - r)) = (0.75 + 0) / 2
    assert TruthRatio(mode="retain").aggregate(values) == pytest.approx(0.375)
    assert TruthRatio().aggregate([None]) is None


def test_truth_ratio_exactly_one():
    r = TruthRatio().score(ITEM, [ll(0.5), ll(0.5), ll(0.5, 0.5), ll(0.5)], CTX)
    assert r == pytest.approx(1.0, abs=1e-9)
    assert TruthRatio(mode="forget").aggregate([r]) == pytest.approx(1.0, abs=1e-9)
    assert TruthRatio(mode="retain").aggregate([r]) == pytest.approx(0.0, abs=1e-9)


def test_truth_ratio_epsilon_matches_open_unlearning_for_tiny_probabilities():
    # mean NLL 30 (para) and 25 (perturbed): the 1e-10 guard dominates P̃(para) = 9.4e-14
    para = LogLikelihoodResponse((-30.0,), (False,))
    pert = LogLikelihoodResponse((-25.0,), (False,))
    r = TruthRatio().score(ITEM, [para, pert, pert, pert], CTX)
    assert r == pytest.approx(math.exp(-25) / (math.exp(-30) + 1e-10), rel=1e-12)
    assert r == pytest.approx(0.13876, rel=1e-4)  # not exp(5) = 148.4
    assert TruthRatio(mode="forget").aggregate([r]) == pytest.approx(r)


def test_truth_ratio_answer_as_paraphrase_and_missing():
    m = TruthRatio(mode="retain", paraphrase_field="answer")
    assert m.requests(ITEM, CTX)[0] == LogLikelihood(PROMPT, " Kuwait City</s>")
    empty = LogLikelihoodResponse((), ())
    assert m.score(ITEM, [empty, ll(0.5), ll(0.5), ll(0.5)], CTX) is None
    assert m.score(ITEM, [ll(0.5), ll(0.5), empty, ll(0.5)], CTX) is None


def test_truth_ratio_direction_depends_on_mode():
    assert TruthRatio(mode="retain").higher_is_better is True
    assert TruthRatio(mode="forget").higher_is_better is False
    assert TruthRatio.higher_is_better is None


# ---------------------------------------------------------------- ES and EM


@pytest.mark.parametrize(
    "g, es, em",
    [
        # the last flag is the EOS token and is dropped before scoring
        ((False, True, True, True, False), 0.75, 0.75),  # k = 1 of n = 4
        ((True, False, True, False, True), 0.25, 0.5),  # no suffix matches: k = n-1 = 3
        ((False, False, True, True), 1 / 3, 1 / 3),  # only the last matches: k = 2 (same ES)
        ((False, False, False, False), 1 / 3, 0.0),  # no greedy token: ES = 1/n, EM = 0
        ((True, True, True, True), 1.0, 1.0),  # all greedy
        ((True, True, False), 1.0, 1.0),  # a non-greedy EOS does not count
        ((False, True), 1.0, 0.0),  # single answer token: ES = 1 - 0/1 always
        ((True, True), 1.0, 1.0),
    ],
)
def test_extraction_strength_and_exact_memorization(g, es, em):
    assert ExtractionStrength().score(ITEM, [flags(*g)], CTX) == pytest.approx(es)
    assert ExactMemorization().score(ITEM, [flags(*g)], CTX) == pytest.approx(em)


@pytest.mark.parametrize("g", [(True,), ()])
def test_no_valid_token_es_zero_em_missing(g):
    assert ExtractionStrength().score(ITEM, [flags(*g)], CTX) == 0.0
    assert ExactMemorization().score(ITEM, [flags(*g)], CTX) is None
    assert ExactMemorization().aggregate([None, 0.5, 1.0]) == 0.75
    assert ExtractionStrength().aggregate([0.0, 0.5, 1.0]) == 0.5


# ---------------------------------------------------------------- ROUGE-L


def gen(text: str) -> list[GenerateResponse]:
    return [GenerateResponse(text, max(1, len(text.split())))]


def test_rouge_l_recall_and_f1_by_hand():
    item = Item("r", "Where was the author born?", "The author was born in Kuwait City.")
    # answer: the author was born in kuwait citi (7); generation: he was born in kuwait (5)
    # LCS = was born in kuwait = 4 -> recall 4/7, precision 4/5, F1 = 2PR/(P+R) = 2/3
    g = gen("He was born in Kuwait.")
    assert RougeL().score(item, g, CTX) == pytest.approx(4 / 7)
    assert RougeL(kind="f1").score(item, g, CTX) == pytest.approx(2 / 3)
    # a longest *common subsequence*, not a bag of words: order matters
    item2 = Item("r2", "q", "born in Kuwait")
    assert RougeL().score(item2, gen("Kuwait, born"), CTX) == pytest.approx(1 / 3)
    # lowercased, punctuation dropped
    assert RougeL().score(Item("r3", "q", "Paris"), gen("PARIS!"), CTX) == 1.0


def test_rouge_l_stemming():
    item = Item("s", "q", "running dogs quickly")
    g = gen("he runs with a dog")
    # stemmed: answer run dog quickli, generation he run with a dog -> LCS 2
    assert RougeL().score(item, g, CTX) == pytest.approx(2 / 3)
    assert RougeL(kind="f1").score(item, g, CTX) == pytest.approx(0.5)  # P 2/5, R 2/3
    # without stemming nothing matches
    assert RougeL(use_stemmer=False).score(item, g, CTX) == 0.0


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_rouge_l_empty_generation_is_zero(text):
    assert RougeL().score(ITEM, [GenerateResponse(text, 0)], CTX) == 0.0
    assert RougeL(kind="f1").score(ITEM, [GenerateResponse(text, 0)], CTX) == 0.0


def test_rouge_l_aggregate_is_mean():
    assert RougeL().aggregate([1.0, 0.0, 0.5]) == pytest.approx(0.5)
