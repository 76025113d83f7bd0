"""Answer probability (TOFU; open-unlearning ``probability`` / ``probability_w_options``).

Scored text: the continuation ``ctx.continuation(answer)`` = the answer plus the
end-of-turn/EOS marker; all its tokens count (EOS included), prompt tokens are masked.
``L̄`` is the mean negative log-likelihood per continuation token (nats) and
``P̃ = exp(-L̄)`` the per-token geometric-mean probability.

* ``normalized=False`` (forget / retain sets): per item ``P̃(answer | x)``.
* ``normalized=True`` (real authors / world facts): per item
  ``P̃(a) / (P̃(a) + Σ_j P̃(pert_j) + 1e-10)`` over the correct answer ``a`` and the wrong
  options ``item.perturbed_answers``. As in open-unlearning's ``probability_w_options``,
  each option's probability is the *length-normalised* ``P̃`` (its ``"prob"`` field is
  ``exp(-avg_loss)``), not the summed sequence probability, and the ``1e-10`` is
  open-unlearning's guard (kept so values match it).

An item whose continuation has no tokens (a tokenization mismatch) is missing (``None``),
as open-unlearning filters it. The set value is the mean of the defined per-item values.
Higher = the model puts more mass on the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from bench.items import Item
from bench.metrics.base import EvalContext, Metric
from bench.metrics.common import (
    EPS,
    answer_request,
    check_bool,
    check_responses,
    normalised_prob,
    require_field,
)
from bench.registry import METRICS
from bench.requests import LogLikelihoodResponse, Request, Response


@METRICS.register("probability", "exp(-mean NLL) of the answer incl. EOS; normalized=True: vs perturbed options")
class Probability(Metric):
    """``P̃(answer | x)``, or with ``normalized=True`` its share among the options."""

    name: ClassVar[str] = "probability"
    applies_to: ClassVar[str] = "QA answers (forget/retain; normalized=True: real authors/world facts with options)"
    higher_is_better: ClassVar[bool | None] = True

    def __init__(self, normalized: bool = False):
        self.normalized = check_bool(self.name, "normalized", normalized)

    def requests(self, item: Item, ctx: EvalContext) -> list[Request]:
        reqs: list[Request] = [answer_request(item, ctx, require_field(self.name, item, "answer"))]
        if self.normalized:
            perts = require_field(self.name, item, "perturbed_answers")
            reqs += [answer_request(item, ctx, p) for p in perts]
        return reqs

    def score(self, item: Item, responses: Sequence[Response], ctx: EvalContext) -> float | None:
        n = 1 + (len(item.perturbed_answers) if self.normalized else 0)
        check_responses(self.name, responses, n, LogLikelihoodResponse)
        probs = [normalised_prob(r) for r in responses]  # type: ignore[arg-type]
        if any(p is None for p in probs):
            return None
        if not self.normalized:
            return probs[0]
        correct, wrong = probs[0], sum(probs[1:])  # type: ignore[arg-type]
        return correct / (correct + wrong + EPS)  # type: ignore[operator]
