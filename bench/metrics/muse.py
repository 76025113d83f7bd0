"""MUSE (Shi et al. 2025) memorisation scores, as MUSE's official evaluation
(swj0419/muse_bench ``metrics/verbmem.py``, ``metrics/knowmem.py``, ``metrics/logger.py``).

Both are **ROUGE-L F1** (``rouge_score``, ``use_stemmer=False``) between the greedy output
and the reference; the set value is the mean (MUSE reports it × 100; we keep [0, 1]).
Higher = more memorised (forget sets: lower is the goal; ``knowmem`` on retain = utility).

* ``verbmem`` (VerbMem, ``verbmem/forget``): the item's prompt is MUSE's ``prompt`` (set
  format ``raw``: BOS + prompt, no template), the reference ``item.answer`` is ``gt``.
  MUSE cuts the reference to its first ``max_new_tokens`` (128) tokens of
  ``tokenizer(gt, add_special_tokens=True)`` — BOS takes one slot — and decodes them with
  ``skip_special_tokens=True, clean_up_tokenization_spaces=True``; we do the same with the
  evaluated model's tokenizer (``cut_reference=True``). ``variant="open-unlearning"``
  instead scores the whole ``gt`` with stemming on (open-unlearning's MUSE config).
* ``knowmem`` (KnowMem, ``knowmem/forget_qa`` and ``retain_qa``): the few-shot prompt
  ``Question: q\\nAnswer: a\\n\\n`` × shots + ``Question: q\\nAnswer: `` is rendered by the task
  into ``item.question`` (format ``raw``); the output is cut before the first
  ``"\\n\\n"``, ``"\\nQuestion"`` or ``"Question:"`` (MUSE's ``get_prefix_before_words_occur``;
  also applied here, so it holds whatever the set's stop strings are), then scored against
  ``item.answer``.

Generations are stripped by the backend; MUSE does not strip, which ``rouge_score``'s
tokenizer (``[a-z0-9]`` runs) makes immaterial. An empty output scores 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from bench.errors import BenchError
from bench.items import Item
from bench.metrics.base import EvalContext, Metric
from bench.metrics.common import check_bool, check_choice, check_responses, require_field
from bench.metrics.scored import generation_request
from bench.registry import METRICS
from bench.requests import GenerateResponse, Request, Response

KNOWMEM_CUTS = ("\n\n", "\nQuestion", "Question:")


def prefix_before(text: str, words: Sequence[str]) -> str:
    """MUSE's ``get_prefix_before_words_occur``: ``text.split(w)[0]`` for each word in turn."""
    for w in words:
        text = text.split(w)[0]
    return text


def rouge_l_f1(reference: str, output: str, use_stemmer: bool = False) -> float:
    """``rouge_score`` ROUGE-L F-measure (0 for an empty output)."""
    if not output.strip():
        return 0.0
    from rouge_score import rouge_scorer

    scorer = _SCORERS.get(use_stemmer)
    if scorer is None:
        scorer = _SCORERS[use_stemmer] = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
    return float(scorer.score(reference, output)["rougeL"].fmeasure)


_SCORERS: dict[bool, Any] = {}


def cut_reference(tokenizer: Any, gt: str, max_tokens: int) -> str:
    """MUSE's ``gt_short``: the first ``max_tokens`` ids of ``tokenizer(gt)`` (special tokens
    added, so BOS counts), decoded without special tokens."""
    ids = tokenizer(gt, add_special_tokens=True)["input_ids"][:max_tokens]
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True)


@METRICS.register("verbmem", "MUSE VerbMem: ROUGE-L F1 (no stemming) of the continuation vs gt cut to 128 tokens")
class VerbMem(Metric):
    """MUSE VerbMem; options ``variant`` ("muse" | "open-unlearning")."""

    name: ClassVar[str] = "verbmem"
    higher_is_better: ClassVar[bool | None] = True
    applies_to: ClassVar[str] = "continuation prompts (format raw), e.g. MUSE verbmem/forget"

    def __init__(self, variant: str = "muse"):
        self.variant = check_choice(self.name, "variant", variant, ("muse", "open-unlearning"))

    def requests(self, item: Item, ctx: EvalContext) -> list[Request]:
        return [generation_request(item, ctx)]

    def score(self, item: Item, responses: Sequence[Response], ctx: EvalContext) -> float | None:
        check_responses(self.name, responses, 1, GenerateResponse)
        gt = require_field(self.name, item, "answer")
        out = responses[0].text  # type: ignore[union-attr]
        if self.variant == "open-unlearning":
            return rouge_l_f1(gt, out, use_stemmer=True)
        if ctx.tokenizer is None:
            raise BenchError("metric 'verbmem' needs the evaluated model's tokenizer to cut the reference")
        return rouge_l_f1(cut_reference(ctx.tokenizer, gt, ctx.max_new_tokens), out)


@METRICS.register("knowmem", "MUSE KnowMem: ROUGE-L F1 (no stemming) of the few-shot answer, cut at the next question")
class KnowMem(Metric):
    """MUSE KnowMem; option ``use_stemmer`` (default False, as MUSE)."""

    name: ClassVar[str] = "knowmem"
    higher_is_better: ClassVar[bool | None] = True
    applies_to: ClassVar[str] = "few-shot QA prompts (format raw), e.g. MUSE knowmem/forget_qa, retain_qa"

    def __init__(self, use_stemmer: bool = False):
        self.use_stemmer = check_bool(self.name, "use_stemmer", use_stemmer)

    def requests(self, item: Item, ctx: EvalContext) -> list[Request]:
        return [generation_request(item, ctx)]

    def score(self, item: Item, responses: Sequence[Response], ctx: EvalContext) -> float | None:
        check_responses(self.name, responses, 1, GenerateResponse)
        out = prefix_before(responses[0].text, KNOWMEM_CUTS)  # type: ignore[union-attr]
        return rouge_l_f1(require_field(self.name, item, "answer"), out, self.use_stemmer)
