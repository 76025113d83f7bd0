"""The metric contract.

A metric is a class registered in ``bench.registry.METRICS``. Per item it declares the
requests it needs (:meth:`Metric.requests`), gets them back answered (the engine batches
and dedupes every metric's requests, so the probability, truth ratio, extraction strength
and exact memorization of an item share one forward pass), and returns a per-item value
(:meth:`Metric.score`); :meth:`Metric.aggregate` turns the per-item values into the set's
number. A per-item value of ``None`` means "undefined for this item" and is left out of
the aggregate (reported as missing, never as 0). A per-item value may also be a
JSON-able mapping where a corpus-level aggregate needs more than a number (the metric's
``aggregate`` then reads it).

Scoring runs per set, after the backend is closed (its GPU memory is free):
:meth:`Metric.score_set` gets every item of the set with its responses at once, so a
model-based scorer (embeddings, NLI, gibberish) batches; the default loops over
:meth:`Metric.score`.

How an item becomes a prompt and a scored continuation is the set's *format* (see
:data:`bench.items.FORMATS`); metrics ask :class:`EvalContext` (``ctx.prompt_for(item)``,
``ctx.continuation(text)``) and never format text themselves.

Derived metrics (forget quality, model utility, AUC, ...) take other metrics' results and
reference runs, never the model: they are plain functions registered with
``kind="derived"`` (see :mod:`bench.metrics.derived`) and declared by tasks as nodes of
the metric graph (:mod:`bench.graph`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from bench.items import Item
from bench.prompts import PromptConfig, default_bos
from bench.requests import Request, Response


@dataclass(frozen=True)
class EvalContext:
    """What a metric needs to build requests: the set's format, the model's prompt config,
    the generation budget and stop strings.

    * format ``"model"``: prompt = the prompt config applied to ``item.question``;
      continuation = the prompt config's continuation of the answer.
    * format ``"raw"``: prompt = BOS (if the model has one) + ``item.question`` as is;
      continuation = the text verbatim.
    * format ``"document"``: prompt = BOS (or empty: the backend then scores from the
      second token); continuation = the whole text (the backend chunks it at the model's
      context).
    """

    prompt: PromptConfig
    tokenizer: Any = None
    max_new_tokens: int = 200
    stop: tuple[str, ...] = ()
    format: str = "model"

    def prompt_for(self, item: Item) -> str:
        if self.format == "model":
            return self.prompt.prompt(item.question, self.tokenizer)
        bos = default_bos(self.tokenizer)
        if self.format == "raw":
            return bos + item.question
        return bos

    def continuation(self, answer: str) -> str:
        if self.format == "model":
            return self.prompt.continuation(answer)
        return answer


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

    def score_set(self, items: Sequence[Item], responses: Sequence[Sequence[Response]],
                  ctx: EvalContext) -> list[Any]:
        """Per-item values for a whole set (``responses[i]`` answer ``items[i]``'s requests).

        The default calls :meth:`score` per item; model-based metrics override it to batch.
        """
        return [self.score(item, resp, ctx) for item, resp in zip(items, responses)]

    def aggregate(self, values: Sequence[float | None]) -> float | None:
        """Mean of the defined per-item values (``None`` when there is none)."""
        vals = [v for v in values if v is not None]
        return sum(vals) / len(vals) if vals else None

    def options(self) -> dict[str, Any]:
        """The options this instance was built with (recorded in results)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}
