"""Multiple-choice accuracy by option log-likelihood (MMLU, as lm-evaluation-harness's
``mmlu`` task: ``output_type: multiple_choice``, metric ``acc``).

Items carry their options in ``item.meta["choices"]`` (the continuation texts, e.g.
``(" A", " B", " C", " D")``) and the gold index in ``item.meta["answer_index"]``; the
prompt (few-shot examples included) is ``item.question`` on a ``raw`` set
(:mod:`bench.mmlu` builds them). Per item, one ``LogLikelihood`` request per option; the
prediction is the option with the highest **summed** log-likelihood (lm-eval's ``acc``;
ties go to the first option, as ``numpy.argmax``); the value is 1 if it is the gold
index, else 0. ``normalize="tokens"`` divides by the option's token count instead
(length-normalised; for letter options both agree).

Aggregate: ``average="micro"`` (default) = share of correct questions over the whole set
(lm-eval's group ``mmlu`` accuracy, weighted by subject size); ``"macro"`` = mean of
per-subject accuracies (``item.meta["subject"]``; per-item values are then
``{"subject", "correct"}`` mappings). Higher = better.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from bench.errors import BenchError
from bench.items import Item
from bench.metrics.base import EvalContext, Metric
from bench.metrics.common import check_choice, check_responses
from bench.registry import METRICS
from bench.requests import LogLikelihood, LogLikelihoodResponse, Request, Response


def _choices(item: Item) -> tuple[Sequence[str], int]:
    choices = item.meta.get("choices")
    gold = item.meta.get("answer_index")
    if not isinstance(choices, (list, tuple)) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
        raise BenchError(f"item '{item.id}': field 'choices' must list at least 2 option texts; metric 'choice_accuracy' needs it")
    if isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold < len(choices):
        raise BenchError(f"item '{item.id}': field 'answer_index' must be an option index 0..{len(choices) - 1} (got {gold!r})")
    return choices, gold


def predict(responses: Sequence[LogLikelihoodResponse], normalize: str = "none") -> int:
    """Index of the best option (first on ties)."""
    best, best_i = -float("inf"), 0
    for i, r in enumerate(responses):
        s = r.sum_logprob
        if normalize == "tokens":
            s = s / r.num_tokens if r.num_tokens else -float("inf")
        if s > best:
            best, best_i = s, i
    return best_i


@METRICS.register("choice_accuracy", "multiple-choice accuracy by option log-likelihood (MMLU; lm-eval acc)")
class ChoiceAccuracy(Metric):
    """Accuracy over items with ``meta["choices"]`` / ``meta["answer_index"]``; options
    ``normalize`` ("none" | "tokens"), ``average`` ("micro" | "macro")."""

    name: ClassVar[str] = "choice_accuracy"
    higher_is_better: ClassVar[bool | None] = True
    applies_to: ClassVar[str] = "multiple-choice items (meta choices/answer_index), format raw: MMLU"

    def __init__(self, normalize: str = "none", average: str = "micro"):
        self.normalize = check_choice(self.name, "normalize", normalize, ("none", "tokens"))
        self.average = check_choice(self.name, "average", average, ("micro", "macro"))

    def requests(self, item: Item, ctx: EvalContext) -> list[Request]:
        choices, _ = _choices(item)
        prompt = ctx.prompt_for(item)
        return [LogLikelihood(prompt, ctx.continuation(c)) for c in choices]

    def score(self, item: Item, responses: Sequence[Response], ctx: EvalContext) -> Any:
        choices, gold = _choices(item)
        check_responses(self.name, responses, len(choices), LogLikelihoodResponse)
        correct = float(predict(responses, self.normalize) == gold)  # type: ignore[arg-type]
        if self.average == "macro":
            return {"subject": str(item.meta.get("subject", "")), "correct": correct}
        return correct

    def aggregate(self, values: Sequence[Any]) -> float | None:
        vals = [v for v in values if v is not None]
        if not vals:
            return None
        if self.average == "micro":
            return sum(float(v) for v in vals) / len(vals)
        by: dict[str, list[float]] = {}
        for v in vals:
            by.setdefault(v["subject"], []).append(v["correct"])
        return sum(sum(c) / len(c) for c in by.values()) / len(by)
