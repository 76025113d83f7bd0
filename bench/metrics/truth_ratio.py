"""Truth ratio (TOFU; open-unlearning ``truth_ratio`` with ``closer_to_1_better`` /
``true_better``).

Per item, with ``L̄`` the mean NLL per continuation token (answer + EOS, prompt masked):

    r = exp(-mean_j L̄(pert_j | x)) / (exp(-L̄(para | x)) + 1e-10)

i.e. the geometric mean of the perturbed answers' ``P̃`` over the paraphrased answer's
``P̃`` ("false / true", TOFU's ``R_truth``). ``para`` is ``item.paraphrased_answer``
(forget / retain sets) or ``item.answer`` with ``paraphrase_field="answer"`` (real
authors / world facts, where the perturbed answers are the wrong options).

Orientation: SPEC.md writes ``R = exp(mean_j L̄(pert_j) − L̄(para))`` = true / false,
the inverse of ``r``. open-unlearning stores ``r`` (false / true) per item and we follow
it, so per-item values (and forget quality computed from them) are comparable with
open-unlearning's logs; the aggregates are the same numbers either way:

* ``mode="forget"``: ``mean(min(r, 1 / (r + 1e-10)))`` (= SPEC's ``mean(min(R, 1/R))``;
  1 = paraphrase and perturbations equally likely; higher = less knowledge shown).
* ``mode="retain"``: ``mean(max(0, 1 − r))`` (= SPEC's ``mean(max(0, 1 − 1/R))``;
  higher = the true answer preferred; used on retain, real authors and world facts).

The ``1e-10`` guards are open-unlearning's and matter when ``P̃(para)`` is tiny (an
unlearned model): ``r`` stays finite. An item with a token-less continuation is missing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

from bench.items import Item
from bench.metrics.base import EvalContext, Metric
from bench.metrics.common import (
    EPS,
    answer_request,
    check_choice,
    check_responses,
    require_field,
)
from bench.registry import METRICS
from bench.requests import LogLikelihoodResponse, Request, Response

TRUTH_RATIO_MODES = ("forget", "retain")
PARAPHRASE_FIELDS = ("paraphrased_answer", "answer")


def truth_ratio_value(para: LogLikelihoodResponse, perts: Sequence[LogLikelihoodResponse]) -> float | None:
    """Per-item ``r`` (false / true, open-unlearning's orientation); ``None`` if any is token-less."""
    if para.num_tokens == 0 or not perts or any(p.num_tokens == 0 for p in perts):
        return None
    wrong = math.exp(-sum(p.mean_nll for p in perts) / len(perts))
    correct = math.exp(-para.mean_nll)
    return wrong / (correct + EPS)


def aggregate_forget(values: Sequence[float | None]) -> float | None:
    """``mean(min(r, 1/(r + 1e-10)))`` over the defined values (``None`` if there is none)."""
    vals = [min(r, 1.0 / (r + EPS)) for r in values if r is not None]
    return sum(vals) / len(vals) if vals else None


def aggregate_retain(values: Sequence[float | None]) -> float | None:
    """``mean(max(0, 1 − r))`` over the defined values (``None`` if there is none)."""
    vals = [max(0.0, 1.0 - r) for r in values if r is not None]
    return sum(vals) / len(vals) if vals else None


class _DirectionByMode:
    """``higher_is_better`` of a TruthRatio: ``True`` for mode "retain" (higher = the true
    answer preferred), ``False`` for "forget" (higher = less knowledge shown); ``None`` on
    the class, where the mode is not known."""

    def __get__(self, obj: TruthRatio | None, owner: type) -> bool | None:
        return None if obj is None else obj.mode == "retain"


@METRICS.register("truth_ratio", "per item P̃(perturbed)/P̃(paraphrased); mode forget: mean min(r,1/r), retain: mean max(0,1-r)")
class TruthRatio(Metric):
    """Per-item ``r`` = geometric-mean ``P̃(pert)`` / ``P̃(para)``; aggregate by ``mode``."""

    name: ClassVar[str] = "truth_ratio"
    applies_to: ClassVar[str] = "QA sets with paraphrased/perturbed answers (TOFU-shaped)"

    def __init__(self, mode: str = "forget", paraphrase_field: str = "paraphrased_answer"):
        self.mode = check_choice(self.name, "mode", mode, TRUTH_RATIO_MODES)
        self.paraphrase_field = check_choice(
            self.name, "paraphrase_field", paraphrase_field, PARAPHRASE_FIELDS
        )

    higher_is_better = _DirectionByMode()  # type: ignore[assignment]

    def requests(self, item: Item, ctx: EvalContext) -> list[Request]:
        para = require_field(self.name, item, self.paraphrase_field)
        perts = require_field(self.name, item, "perturbed_answers")
        return [answer_request(item, ctx, para)] + [answer_request(item, ctx, p) for p in perts]

    def score(self, item: Item, responses: Sequence[Response], ctx: EvalContext) -> float | None:
        check_responses(self.name, responses, 1 + len(item.perturbed_answers), LogLikelihoodResponse)
        return truth_ratio_value(responses[0], responses[1:])  # type: ignore[arg-type]

    def aggregate(self, values: Sequence[float | None]) -> float | None:
        return aggregate_forget(values) if self.mode == "forget" else aggregate_retain(values)
