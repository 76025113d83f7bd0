"""The metric contract.

A metric is a class registered in ``bench.registry.METRICS``. Per item it declares the
requests it needs (:meth:`Metric.requests`), gets them back answered (the engine batches
and dedupes every metric's requests, so the probability, truth ratio, extraction strength
and exact memorization of an item share one forward pass), and returns a per-item value
(:meth:`Metric.score`); :meth:`Metric.aggregate` turns the per-item values into the set's
number. A per-item value of ``None`` means "undefined for this item" and is left out of
the aggregate (reported as missing, never as 0).

Derived metrics (forget quality, model utility) take other metrics' results and
reference runs, never the model: they are plain functions registered with
``kind="derived"`` (see :mod:`bench.metrics.derived`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from bench.items import Item
from bench.prompts import PromptConfig
from bench.requests import Request, Response


@dataclass(frozen=True)
class EvalContext:
    """What a metric needs to build requests: the prompt config and generation budget."""

    prompt: PromptConfig
    tokenizer: Any = None
    max_new_tokens: int = 200
    stop: tuple[str, ...] = ()

    def prompt_for(self, item: Item) -> str:
        return self.prompt.prompt(item.question, self.tokenizer)

    def continuation(self, answer: str) -> str:
        return self.prompt.continuation(answer)


class Metric:
    """Base class: subclasses set ``name``, ``higher_is_better`` and implement the two steps.

    ``higher_is_better`` is the direction *for the model's knowledge* (e.g. ROUGE-L: higher
    = more of the answer reproduced); on a forget set, lower is the unlearning goal.
    """

    name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool | None] = True

    def requests(self, item: Item, ctx: EvalContext) -> list[Request]:
        raise NotImplementedError

    def score(self, item: Item, responses: Sequence[Response], ctx: EvalContext) -> float | None:
        raise NotImplementedError

    def aggregate(self, values: Sequence[float | None]) -> float | None:
        """Mean of the defined per-item values (``None`` when there is none)."""
        vals = [v for v in values if v is not None]
        return sum(vals) / len(vals) if vals else None

    def options(self) -> dict[str, Any]:
        """The options this instance was built with (recorded in results)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}
