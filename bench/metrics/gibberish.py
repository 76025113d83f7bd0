"""Gibberish score (open-unlearning ``classifier_prob`` with its ``forget_Q_A_gibberish``
config): the probability of the *clean* class of a gibberish classifier on the greedy
generation ``g(x)``.

Convention, as open-unlearning: model ``madhurjindal/autonlp-Gibberish-Detector-492513457``
(option ``model``: any hub id or local directory), class index ``class_id = 0`` (that
model's "clean" label; option), inputs truncated to ``max_length = 32`` tokens, softmax in
float32; the set value is the mean over items. Higher = more fluent, readable output
(1 = surely clean). open-unlearning runs it on the forget set's generations; it applies to
any set. An empty generation is scored as the empty string, as there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from bench.items import Item
from bench.metrics.base import EvalContext
from bench.metrics.scored import ScoredMetric, generations
from bench.registry import METRICS
from bench.requests import Response
from bench.scorers import GIBBERISH_MODEL


@METRICS.register("gibberish", "probability of the gibberish classifier's clean class (index 0) on the generation")
class Gibberish(ScoredMetric):
    """``P(clean | g(x))``; options ``model``, ``class_id``, ``max_length``, ``device``, ``batch_size``."""

    name: ClassVar[str] = "gibberish"

    def __init__(self, model: str = GIBBERISH_MODEL, class_id: int = 0, max_length: int = 32,
                 device: str | None = None, batch_size: int = 32):
        super().__init__(model, device, batch_size)
        self.class_id = int(class_id)
        self.max_length = int(max_length)

    def _load(self) -> Any:
        from bench import scorers

        return scorers.classifier(self.model, device=self.device, batch_size=self.batch_size,
                                  max_length=self.max_length)

    def score_set(self, items: Sequence[Item], responses: Sequence[Sequence[Response]],
                  ctx: EvalContext) -> list[Any]:
        gens = generations(self.name, responses)
        if not items:
            return []
        clf = self.load()
        if clf is None:
            return [None] * len(items)
        if not 0 <= self.class_id < len(clf.labels):
            from bench.errors import BenchError

            raise BenchError(f"metric 'gibberish': class_id {self.class_id} out of range for '{self.model}' "
                             f"(labels: {', '.join(clf.labels)})")
        probs = clf.probabilities(gens)
        return [float(row[self.class_id]) for row in probs]
