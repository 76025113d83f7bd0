"""RWKU's utility scores that :mod:`bench.metrics.rwku` does not cover: TriviaQA exact match
and F1, BBH exact match (``eval/eval_triviaqa.py`` and ``eval/eval_bbh.py`` of
jinzhuoran/RWKU), and the level averages of its result table.

Normalisation (both files' ``Metric._normalize_text``): lowercase, drop every
``string.punctuation`` character, replace the words a / an / the by a space, collapse
whitespace; tokens are the whitespace-split words (an empty text has none).

* ``rwku_qa_em``: ``max`` over the references (``item.meta["answers"]``, a list) of
  ``normalised tokens(reference) == normalised tokens(generation)``; the generation is
  used as is (not stripped: the normalisation ignores whitespace). 1 or 0 per item, mean
  per set. Higher = better.
* ``rwku_qa_f1``: ``max`` over the references of the token F1 (bag of words, ``Counter``
  intersection); if either side has no token, 1 when both are empty else 0. Higher = better.
* ``rwku_bbh_em``: the prediction is the text after ``"the answer is"`` / ``"The answer
  is"`` up to the next ``"."`` (RWKU's regex ``[t|T]he answer is (.*?)\\.``, first match,
  stripped), else the whole generation stripped; empty -> ``"NOANSWER"``; then exact match
  as above against the references. RWKU passes the answer *string* where a list of
  references is expected, so its references are the answer's single characters
  (``references="characters"``, the default, which reproduces RWKU's published numbers: "(A)"
  matches a prediction "(A)" through the character "A", while "False" never matches
  "False"); ``references="answer"`` scores against the whole answer (the evident intent).
* ``rwku_average``: arithmetic mean of set aggregates (RWKU's "All" columns: the mean of
  the forget levels 1-3, of the neighbour levels 1-2); ``None`` if one is missing.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import ClassVar

from bench.errors import BenchError
from bench.items import Item
from bench.metrics.base import EvalContext, Metric
from bench.metrics.common import check_choice, check_responses
from bench.metrics.derived import derived
from bench.metrics.scored import generation_request
from bench.registry import METRICS
from bench.requests import GenerateResponse, Request, Response

NOANSWER = "NOANSWER"
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)
_BBH_ANSWER = re.compile(r"[t|T]he answer is (.*?)\.")


def normalize_text(text: str) -> str:
    """RWKU's ``_normalize_text``: lower, strip punctuation, articles -> space, collapse spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def tokens(text: str) -> list[str]:
    return normalize_text(text).split() if text else []


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """``max`` over ``references`` of token-list equality (RWKU's ``EM._exact_match``)."""
    if not references:
        raise BenchError("exact match needs at least one reference")
    pred = tokens(prediction)
    return float(max(int(tokens(ref) == pred) for ref in references))


def f1_one(prediction: str, reference: str) -> float:
    ref, pred = tokens(reference), tokens(prediction)
    if not ref or not pred:
        return float(ref == pred)
    common = sum((Counter(ref) & Counter(pred)).values())
    if common == 0:
        return 0.0
    p, r = common / len(pred), common / len(ref)
    return 2 * p * r / (p + r)


def f1(prediction: str, references: Sequence[str]) -> float:
    """``max`` over ``references`` of the token F1 (RWKU's ``F1._f1``)."""
    if not references:
        raise BenchError("F1 needs at least one reference")
    return max(f1_one(prediction, ref) for ref in references)


def bbh_prediction(output: str) -> str:
    """RWKU's BBH answer extraction (module docstring)."""
    m = _BBH_ANSWER.search(output)
    pred = m.group(1).strip() if m else output.strip()
    return pred or NOANSWER


def _answers(metric: str, item: Item) -> list[str]:
    refs = item.meta.get("answers")
    if not isinstance(refs, (list, tuple)) or not refs or not all(isinstance(r, str) for r in refs):
        raise BenchError(f"item '{item.id}': field 'answers' must be a non-empty list of strings; metric '{metric}' needs it")
    return list(refs)


class _GenMetric(Metric):
    higher_is_better: ClassVar[bool | None] = True

    def requests(self, item: Item, ctx: EvalContext) -> list[Request]:
        return [generation_request(item, ctx)]

    def text(self, responses: Sequence[Response]) -> str:
        check_responses(self.name, responses, 1, GenerateResponse)
        return responses[0].text  # type: ignore[union-attr]


@METRICS.register("rwku_qa_em", "RWKU TriviaQA exact match: normalised tokens equal to one of the answers")
class RWKUQaEM(_GenMetric):
    name: ClassVar[str] = "rwku_qa_em"
    applies_to: ClassVar[str] = "QA items with meta answers (RWKU TriviaQA)"

    def score(self, item: Item, responses: Sequence[Response], ctx: EvalContext) -> float:
        return exact_match(self.text(responses), _answers(self.name, item))


@METRICS.register("rwku_qa_f1", "RWKU TriviaQA F1: best token F1 against the answers")
class RWKUQaF1(_GenMetric):
    name: ClassVar[str] = "rwku_qa_f1"
    applies_to: ClassVar[str] = "QA items with meta answers (RWKU TriviaQA)"

    def score(self, item: Item, responses: Sequence[Response], ctx: EvalContext) -> float:
        return f1(self.text(responses), _answers(self.name, item))


@METRICS.register("rwku_bbh_em", "RWKU BBH exact match of the extracted answer (RWKU's character references by default)")
class RWKUBbhEM(_GenMetric):
    """Option ``references``: ``"characters"`` (RWKU's code) or ``"answer"``."""

    name: ClassVar[str] = "rwku_bbh_em"
    applies_to: ClassVar[str] = "BBH chain-of-thought generations (RWKU retain_bbh)"

    def __init__(self, references: str = "characters"):
        self.references = check_choice(self.name, "references", references, ("characters", "answer"))

    def score(self, item: Item, responses: Sequence[Response], ctx: EvalContext) -> float:
        refs = list(item.answer) if self.references == "characters" else [item.answer]
        return exact_match(bbh_prediction(self.text(responses)), refs)


@derived("rwku_average", "RWKU 'All' column: arithmetic mean of set aggregates (e.g. forget levels 1-3)")
def rwku_average(values: Mapping[str, float | None]) -> float | None:
    """Mean of ``values`` (labels only name them); ``None`` if one is missing."""
    if not values:
        raise BenchError("rwku_average: no values given")
    vals = list(values.values())
    if any(v is None for v in vals):
        return None
    return sum(float(v) for v in vals) / len(vals)  # type: ignore[arg-type]


rwku_average.higher_is_better = None  # type: ignore[attr-defined]  # forget: lower is the goal
rwku_average.applies_to = "aggregates of RWKU's probe sets (derived)"  # type: ignore[attr-defined]
