"""Golden values for RWKU's TriviaQA EM/F1, BBH EM, the 'All' average, and the chat format."""

from __future__ import annotations

import pytest

from bench.errors import BenchError
from bench.items import Item
from bench.metrics.base import EvalContext, chat_prompt
from bench.metrics.rwku_utility import (
    NOANSWER,
    RWKUBbhEM,
    RWKUQaEM,
    RWKUQaF1,
    bbh_prediction,
    exact_match,
    f1,
    normalize_text,
    rwku_average,
)
from bench.prompts import PromptConfig, from_tokenizer
from bench.requests import GenerateResponse


def gen(text: str) -> list[GenerateResponse]:
    return [GenerateResponse(text=text, num_tokens=len(text.split()))]


def test_normalisation_order_lower_punct_articles_spaces():
    assert normalize_text("  The Cat, sat!  ") == "cat sat"
    assert normalize_text("An apple-a-day") == "appleaday"  # '-' dropped first, so no article word is left
    assert normalize_text("a b the") == "b"


def test_triviaqa_exact_match_and_f1_by_hand():
    assert exact_match("  The Estimate.\n", ["Calculated guess", "Estimate"]) == 1.0
    assert exact_match("Estimated", ["Estimate"]) == 0.0  # no stemming
    # pred tokens [big, red, dog], ref [red, dog, house]: p = r = 2/3
    assert f1("the big red dog", ["red dog house"]) == pytest.approx(2 / 3)
    # best reference wins: vs "red car" p = 1, r = 1/2 -> 2/3
    assert f1("red", ["blue", "red car"]) == pytest.approx(2 / 3)
    # both sides without tokens -> 1 (a reference that is only an article), one side -> 0
    assert f1("", ["a"]) == 1.0 and f1("", ["x"]) == 0.0 and f1("x", ["the"]) == 0.0
    with pytest.raises(BenchError):
        exact_match("x", [])


def test_qa_metrics_read_meta_answers():
    it = Item("t/0", "q", "Estimate", meta={"answers": ["Estimate", "Calculated guess"]})
    assert RWKUQaEM().score(it, gen(" calculated guess"), None) == 1.0
    assert RWKUQaF1().score(it, gen("a calculated number"), None) == pytest.approx(0.5)  # p 1/2, r 1/2
    with pytest.raises(BenchError, match="field 'answers'"):
        RWKUQaEM().score(Item("t/1", "q", "a"), gen("a"), None)


def test_bbh_extraction():
    assert bbh_prediction("Let's think. So the answer is (B). Done") == "(B)"
    assert bbh_prediction("The answer is  False .") == "False"
    assert bbh_prediction("  Yes  ") == "Yes"
    assert bbh_prediction("so the answer is .") == NOANSWER
    assert bbh_prediction("   ") == NOANSWER


def test_bbh_character_references_reproduce_rwku_code():
    rwku, whole = RWKUBbhEM(), RWKUBbhEM(references="answer")
    b = Item("b/0", "q", "(B)")
    assert rwku.score(b, gen("So the answer is (B)."), None) == 1.0  # via the character "B"
    assert whole.score(b, gen("So the answer is (B)."), None) == 1.0
    f = Item("b/1", "q", "False")
    assert rwku.score(f, gen("So the answer is False."), None) == 0.0  # RWKU never matches a word answer
    assert whole.score(f, gen("So the answer is False."), None) == 1.0
    # a punctuation-only prediction has no token; "(" of the answer has none either
    assert rwku.score(b, gen("?"), None) == 1.0 and whole.score(b, gen("?"), None) == 0.0
    with pytest.raises(BenchError, match="references"):
        RWKUBbhEM(references="chars")


def test_rwku_average():
    assert rwku_average({"l1": 0.2, "l2": 0.4, "l3": 0.9}) == pytest.approx(0.5)
    assert rwku_average({"l1": 0.2, "l2": None}) is None
    with pytest.raises(BenchError):
        rwku_average({})


def _chat_tokenizer():
    from bench.tiny import build_tokenizer

    tok = build_tokenizer(["Question: what? Answer: yes A: B: <|user|> <|assistant|>"] * 4, vocab_size=300)
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
    return tok


def test_chat_prompt_lead_rules():
    tok = _chat_tokenizer()
    cfg = from_tokenizer(tok, style="chat")
    assert chat_prompt(cfg, tok, "Q?", "Answer:") == "<|user|>\nQ?\n<|assistant|>\nAnswer:"
    assert chat_prompt(cfg, tok, "Q?", " A:") == "<|user|>\nQ?\n<|assistant|>\nA:"  # RWKU drops the space after "\n"
    assert chat_prompt(cfg, tok, "Q?") == "<|user|>\nQ?\n<|assistant|>\n"
    plain = PromptConfig(style="plain")
    assert chat_prompt(plain, tok, "Q?", " A:") == "Q? A:"  # no template: the text as is, then the lead


def test_chat_format_context_uses_item_lead_and_verbatim_continuation():
    tok = _chat_tokenizer()
    ctx = EvalContext(from_tokenizer(tok, style="chat"), tok, 30, ("\n",), "chat")
    it = Item("x/0", "Q?", "yes", meta={"answer_lead": "Answer:"})
    assert ctx.prompt_for(it) == "<|user|>\nQ?\n<|assistant|>\nAnswer:"
    assert ctx.continuation(" B") == " B"  # no end-of-turn appended (multiple choice scores the option alone)
