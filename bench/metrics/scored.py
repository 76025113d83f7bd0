"""Shared machinery of the metrics judged by a second model (embeddings, NLI, gibberish):
reference-text lookup, the generation request, and what happens when the scorer model
cannot be had.

A missing scorer model never fakes a score: :meth:`ScoredMetric.load` catches the load
error, prints **one line** naming the model id and how to point at a local copy, records
it in :attr:`ScoredMetric.note`, and the metric's per-item values become ``None`` (the
set aggregate ``None``); the run's other metrics are unaffected.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, ClassVar

from bench.errors import BenchError
from bench.items import Item
from bench.metrics.base import EvalContext, Metric
from bench.metrics.common import check_responses
from bench.requests import Generate, GenerateResponse, Request, Response

_WARNED: set[tuple[str, str]] = set()


def reference_text(metric: str, item: Item, field: str) -> str:
    """``item.answer`` for ``field="answer"`` (or ``"paraphrased_answer"``), else
    ``item.meta[field]``; a one-line BenchError naming the item and field when it is absent."""
    if field in ("answer", "paraphrased_answer"):
        value = getattr(item, field)
    else:
        value = item.meta.get(field)
    if not isinstance(value, str):
        raise BenchError(f"item '{item.id}': field '{field}' is missing or not text; metric '{metric}' needs it")
    return value


def generation_request(item: Item, ctx: EvalContext) -> Generate:
    """The one greedy generation of an item (the same request ROUGE-L makes, so it is shared)."""
    return Generate(ctx.prompt_for(item), ctx.max_new_tokens, tuple(ctx.stop))


def generations(metric: str, responses: Sequence[Sequence[Response]]) -> list[str]:
    out = []
    for resp in responses:
        check_responses(metric, resp, 1, GenerateResponse)
        out.append(resp[0].text)  # type: ignore[union-attr]
    return out


def unavailable_message(metric: str, model: str, err: BaseException) -> str:
    first = (str(err).splitlines() or [type(err).__name__])[0][:200]
    return (f"metric '{metric}': scorer model '{model}' is not available ({first}); its values are "
            f"None. Download it (e.g. huggingface-cli download {model}) and set the metric's "
            f"model option to the local directory (in a task: its --task-set ..._model=DIR option, see `bench list tasks`)")


class ScoredMetric(Metric):
    """A metric over the item's generation, scored by a model from :mod:`bench.scorers`."""

    higher_is_better: ClassVar[bool | None] = True
    applies_to: ClassVar[str] = "generations (any set, any format)"

    def __init__(self, model: str, device: str | None = None, batch_size: int = 32):
        if not isinstance(model, str) or not model:
            raise BenchError(f"metric '{self.name}': option model must be a hub id or a local path (got {model!r})")
        self.model = model
        self.device = device
        self.batch_size = int(batch_size)
        self._note: str | None = None

    @property
    def note(self) -> str | None:
        """Why this metric's values are ``None`` (the scorer could not be loaded), if so."""
        return self._note

    def requests(self, item: Item, ctx: EvalContext) -> list[Request]:
        return [generation_request(item, ctx)]

    def score(self, item: Item, responses: Sequence[Response], ctx: EvalContext) -> Any:
        return self.score_set([item], [responses], ctx)[0]

    def load(self) -> Any:
        """The pooled scorer, or ``None`` (with :attr:`note` set and one line printed)."""
        try:
            return self._load()
        except (BenchError, OSError, ValueError, ImportError) as e:
            self._note = unavailable_message(self.name, self.model, e)
            if (self.name, self.model) not in _WARNED:  # one line per metric and model per process
                _WARNED.add((self.name, self.model))
                print(f"warning: {self._note}", file=sys.stderr)
            return None

    def _load(self) -> Any:
        raise NotImplementedError
