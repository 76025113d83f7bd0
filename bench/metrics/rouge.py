"""ROUGE-L of the greedy answer against the reference answer (TOFU; open-unlearning).

Convention (as open-unlearning's ``eval_text_similarity``):

* The generation ``g(x)`` is the backend's :class:`~bench.requests.GenerateResponse` text:
  greedy, at most ``ctx.max_new_tokens`` new tokens, decoded *without* special tokens,
  cut before the first EOS/stop string and stripped. It is stripped once more here
  (idempotent).
* ``rouge_score.rouge_scorer.RougeScorer(["rougeL"], use_stemmer=...)`` scores it with
  ``scorer.score(target=item.answer, prediction=g(x))``: recall = LCS / |answer tokens|,
  F1 = harmonic mean of LCS precision and recall. ``rouge_score``'s tokenizer lowercases,
  keeps only ``[a-z0-9]`` runs, and with ``use_stemmer=True`` Porter-stems tokens longer
  than 3 characters ("running" and "runs" both become "run").
* The target is ``item.answer`` as given. open-unlearning decodes its target back from the
  label tokens (special tokens skipped, spaces cleaned up); the two agree up to that
  tokenizer round trip, which ``rouge_score``'s own tokenization makes immaterial.
* An empty generation scores 0 (as ``rouge_score`` does); so does an answer with no
  ``[a-z0-9]`` token.

Higher = more of the answer reproduced (on a forget set, lower is the unlearning goal).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from bench.items import Item
from bench.metrics.base import EvalContext, Metric
from bench.metrics.common import check_bool, check_choice, check_responses, require_field
from bench.registry import METRICS
from bench.requests import Generate, GenerateResponse, Request, Response

ROUGE_KINDS = ("recall", "f1")


@METRICS.register("rouge_l", "ROUGE-L (recall by default, stemmed) of the greedy answer vs the answer")
class RougeL(Metric):
    """ROUGE-L of ``g(x)`` against ``item.answer``; options ``kind`` and ``use_stemmer``.

    ``kind="recall"`` (TOFU/open-unlearning ``rougeL_recall``, the default) or ``"f1"``
    (``rougeL_f1``, MUSE's score). ``use_stemmer=True`` as open-unlearning and TOFU.
    """

    name: ClassVar[str] = "rouge_l"
    applies_to: ClassVar[str] = "generations vs item.answer (any set, any format)"
    higher_is_better: ClassVar[bool | None] = True

    def __init__(self, kind: str = "recall", use_stemmer: bool = True):
        self.kind = check_choice(self.name, "kind", kind, ROUGE_KINDS)
        self.use_stemmer = check_bool(self.name, "use_stemmer", use_stemmer)
        self._scorer: Any = None

    def requests(self, item: Item, ctx: EvalContext) -> list[Request]:
        return [Generate(ctx.prompt_for(item), ctx.max_new_tokens, tuple(ctx.stop))]

    def score(self, item: Item, responses: Sequence[Response], ctx: EvalContext) -> float | None:
        check_responses(self.name, responses, 1, GenerateResponse)
        return self.rouge(require_field(self.name, item, "answer"), responses[0].text)

    def rouge(self, reference: str, generation: str) -> float:
        """ROUGE-L (``self.kind``) of ``generation`` against ``reference``."""
        generation = generation.strip()
        if not generation:
            return 0.0
        if self._scorer is None:
            from rouge_score import rouge_scorer

            self._scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=self.use_stemmer)
        s = self._scorer.score(reference, generation)["rougeL"]
        return float(s.recall if self.kind == "recall" else s.fmeasure)
