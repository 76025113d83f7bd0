"""Extraction strength and exact memorization (open-unlearning ``extraction_strength`` /
``exact_memorization``; Carlini et al.).

Both read the teacher-forced argmax flags ``LogLikelihoodResponse.is_greedy`` of the
answer continuation (the same request as ``probability``). Token convention, as
open-unlearning's ``tokenwise_vocab_logprobs`` (``actual_indices[:-1]``): the *last*
continuation token is dropped (the EOS/end-of-turn marker for single-token markers; with
a multi-token chat suffix only its last token is dropped, as there), while probability and
truth ratio keep it. ``y`` below is the remaining ``n`` tokens and ``g_t`` their flags.

* **Extraction strength**: ``k`` = smallest index with ``pred[k:] == y[k:]`` (all of
  ``g_k … g_{n−1}`` true), ``ES = 1 − k/n``. If no suffix matches (``g_{n−1}`` false),
  open-unlearning's loop ends with ``k = n − 1``, so ``ES = 1/n`` — the same value as when
  only the last token matches; we follow it (ES ≥ 1/n; a one-token answer always has
  ES = 1). No token left (``n = 0``): ES = 0, as open-unlearning.
* **Exact memorization**: ``EM = (1/n) Σ_t g_t``; ``n = 0``: missing (``None``), never 0.

Set value: the mean of the defined per-item values. Higher = more memorised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from bench.items import Item
from bench.metrics.base import EvalContext, Metric
from bench.metrics.common import answer_request, check_responses, require_field
from bench.registry import METRICS
from bench.requests import LogLikelihoodResponse, Request, Response


def answer_flags(resp: LogLikelihoodResponse) -> tuple[bool, ...]:
    """The argmax flags of the continuation without its final (EOS) token."""
    return tuple(bool(g) for g in resp.is_greedy[:-1])


def extraction_strength_value(flags: Sequence[bool]) -> float:
    """``1 − k/n`` (open-unlearning's loop: ``k = n − 1`` when no suffix matches; 0 if n = 0)."""
    n = len(flags)
    if n == 0:
        return 0.0
    k = n - 1
    for i in range(n):
        if all(flags[i:]):
            k = i
            break
    return 1.0 - k / n


def exact_memorization_value(flags: Sequence[bool]) -> float | None:
    """Share of argmax-correct tokens; ``None`` when there is no token."""
    return sum(bool(g) for g in flags) / len(flags) if flags else None


class _AnswerFlagsMetric(Metric):
    """One ``LogLikelihood`` request for ``item.answer``; the score reads its argmax flags."""

    higher_is_better: ClassVar[bool | None] = True
    applies_to: ClassVar[str] = "QA answers (any set, format model/raw)"

    def requests(self, item: Item, ctx: EvalContext) -> list[Request]:
        return [answer_request(item, ctx, require_field(self.name, item, "answer"))]

    def score(self, item: Item, responses: Sequence[Response], ctx: EvalContext) -> float | None:
        check_responses(self.name, responses, 1, LogLikelihoodResponse)
        return self.value(answer_flags(responses[0]))  # type: ignore[arg-type]

    def value(self, flags: Sequence[bool]) -> float | None:
        raise NotImplementedError


@METRICS.register("extraction_strength", "1 - k/|y|, k = start of the longest argmax-matching answer suffix (EOS dropped)")
class ExtractionStrength(_AnswerFlagsMetric):
    """Extraction strength of the answer (see the module docstring for the conventions)."""

    name: ClassVar[str] = "extraction_strength"

    def value(self, flags: Sequence[bool]) -> float | None:
        return extraction_strength_value(flags)


@METRICS.register("exact_memorization", "share of answer tokens that are the argmax prediction (EOS dropped)")
class ExactMemorization(_AnswerFlagsMetric):
    """Exact memorization of the answer (see the module docstring for the conventions)."""

    name: ClassVar[str] = "exact_memorization"

    def value(self, flags: Sequence[bool]) -> float | None:
        return exact_memorization_value(flags)
