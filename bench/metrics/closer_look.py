"""Closer-look metrics (Yuan et al. 2025, seed 004; ``metrics/metrics.py`` of
sail-sg/closer-look-LLM-unlearning): token entropy, cosine similarity, entailment score,
and the aggregates MU and FE.

All are "higher = performs the task" (on a forget set, lower is the unlearning goal).
Every one reads the item's greedy generation ``g(x)`` — the same ``Generate`` request as
ROUGE-L, so no metric here adds a model pass.

* **TE** (``token_entropy``): tokens = the *evaluated model's* ``tokenizer.tokenize(g(x))``;
  ``H = −Σ p log p`` over the unigram frequencies, divided by ``log(n)``, n = number of
  tokens (any log base: the ratio is the same); 0 when n ≤ 1. 1 = no token repeated.
* **CS** (``cosine_similarity``): ``max(0, cos(e(g(x)), e(y)))`` with the sentence embedding
  ``e`` of ``sentence-transformers/paraphrase-MiniLM-L6-v2`` (any hub id or local path).
* **ES** (``entailment``): 1 if the NLI model's argmax label for (premise, hypothesis) is
  "entailment" and the ROUGE-L recall (stemmed, ``rouge_score``) of ``g(x)`` against
  ``item.answer`` is at least 0.1, else 0; the set value is the share. ``premise=
  "generation"``: premise ``g(x)``, hypothesis ``y`` (closer-look's forget set, and both
  sets of its real-world task); ``premise="reference"``: premise ``y``, hypothesis ``g(x)``
  (TOFU retain / real authors / world facts).

``y`` is ``item.answer`` unless ``reference_field`` names another field (``item.meta``):
closer-look's real-world task compares CS with the ``answer`` field (the original model's
own output) while R and the ES gate use ``golden_answer``; on TOFU's real authors / world
facts closer-look compares CS and ES with ``original_answer`` (the full-sentence answer),
a field its own copy of those files has and ``locuslab/TOFU`` lacks — there the short
``answer`` is the fallback (a difference from the reference, noted here).

Differences from the reference code, by design: generations are stripped (closer-look
keeps leading/trailing whitespace: it can change the first token of TE); the NLI inputs are
truncated to the classifier's maximum length (closer-look's ``pipeline`` does not truncate
and fails on longer pairs); embeddings and NLI are batched (values are the same).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from bench import scores
from bench.errors import BenchError
from bench.items import Item
from bench.metrics.base import EvalContext, Metric
from bench.metrics.common import check_choice, check_responses
from bench.metrics.derived import derived
from bench.metrics.scored import ScoredMetric, generation_request, generations, reference_text
from bench.registry import METRICS
from bench.requests import GenerateResponse, Request, Response
from bench.scorers import EMBEDDING_MODEL, NLI_MODEL

ES_ROUGE_GATE = 0.1  # closer-look: ROUGE-L recall below this -> "not entailment"


def token_entropy_value(tokens: Sequence[str]) -> float:
    """Unigram entropy of ``tokens`` over ``log(n)``; 0 for n ≤ 1 (closer-look's
    ``compute_token_entropy`` with ``normalize=True``)."""
    n = len(tokens)
    if n <= 1:
        return 0.0
    h = -sum((c / n) * math.log(c / n) for c in Counter(tokens).values())
    return h / math.log(n)


@METRICS.register("token_entropy", "closer-look TE: unigram entropy of the generation's model tokens / log(n)")
class TokenEntropy(Metric):
    """Token entropy of ``g(x)`` with the evaluated model's tokenizer (module docstring)."""

    name: ClassVar[str] = "token_entropy"
    higher_is_better: ClassVar[bool | None] = True
    applies_to: ClassVar[str] = "generations (any set, any format); needs the model's tokenizer"

    def requests(self, item: Item, ctx: EvalContext) -> list[Request]:
        return [generation_request(item, ctx)]

    def score(self, item: Item, responses: Sequence[Response], ctx: EvalContext) -> float | None:
        check_responses(self.name, responses, 1, GenerateResponse)
        if ctx.tokenizer is None:
            raise BenchError("metric 'token_entropy' needs the evaluated model's tokenizer (none in the context)")
        text = responses[0].text  # type: ignore[union-attr]
        return token_entropy_value(ctx.tokenizer.tokenize(text) if text else [])


@METRICS.register("cosine_similarity", "closer-look CS: max(0, cos) of sentence embeddings of generation and answer")
class CosineSimilarity(ScoredMetric):
    """``max(0, cos(e(g(x)), e(y)))``; options ``model``, ``reference_field``, ``device``, ``batch_size``."""

    name: ClassVar[str] = "cosine_similarity"

    def __init__(self, model: str = EMBEDDING_MODEL, reference_field: str = "answer",
                 device: str | None = None, batch_size: int = 64):
        super().__init__(model, device, batch_size)
        self.reference_field = reference_field

    def _load(self) -> Any:
        from bench import scorers

        return scorers.embedder(self.model, device=self.device, batch_size=self.batch_size)

    def score_set(self, items: Sequence[Item], responses: Sequence[Sequence[Response]],
                  ctx: EvalContext) -> list[Any]:
        gens = generations(self.name, responses)
        refs = [reference_text(self.name, it, self.reference_field) for it in items]
        if not items:
            return []
        emb = self.load()
        if emb is None:
            return [None] * len(items)
        return [max(0.0, c) for c in emb.cosine(gens, refs)]


@METRICS.register("entailment", "closer-look ES: NLI 'entailment' (and ROUGE-L recall >= 0.1) share")
class Entailment(ScoredMetric):
    """1 per item labelled "entailment" by the NLI model (module docstring); options
    ``premise`` ("generation" | "reference"), ``reference_field``, ``model``,
    ``entailment_label``, ``rouge_gate``, ``device``, ``batch_size``, ``max_length``."""

    name: ClassVar[str] = "entailment"

    def __init__(self, premise: str = "generation", model: str = NLI_MODEL, reference_field: str = "answer",
                 entailment_label: str = "entailment", rouge_gate: float = ES_ROUGE_GATE,
                 device: str | None = None, batch_size: int = 32, max_length: int | None = None):
        super().__init__(model, device, batch_size)
        self.premise = check_choice(self.name, "premise", premise, ("generation", "reference"))
        self.reference_field = reference_field
        self.entailment_label = entailment_label
        self.rouge_gate = float(rouge_gate)
        self.max_length = max_length
        self._rouge: Any = None

    def _load(self) -> Any:
        from bench import scorers

        return scorers.classifier(self.model, device=self.device, batch_size=self.batch_size,
                                  max_length=self.max_length)

    def rouge_recall(self, reference: str, generation: str) -> float:
        if self._rouge is None:
            from bench.metrics.rouge import RougeL

            self._rouge = RougeL(kind="recall", use_stemmer=True)
        return self._rouge.rouge(reference, generation)

    def score_set(self, items: Sequence[Item], responses: Sequence[Sequence[Response]],
                  ctx: EvalContext) -> list[Any]:
        gens = generations(self.name, responses)
        refs = [reference_text(self.name, it, self.reference_field) for it in items]
        if not items:
            return []
        gate = [self.rouge_recall(it.answer, g) >= self.rouge_gate for it, g in zip(items, gens)]
        clf = self.load()
        if clf is None:
            return [None] * len(items)
        premises, hyps = (gens, refs) if self.premise == "generation" else (refs, gens)
        probs = clf.probabilities(premises, hyps)
        ent = clf.label_index(self.entailment_label)
        return [1.0 if (ok and int(row.argmax()) == ent) else 0.0 for ok, row in zip(gate, probs)]


def _closer_look_form(values: Mapping[str, float | None], tofu_forget_tr: Sequence[str]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for k, v in values.items():
        out[k] = (None if v is None else 1.0 - float(v)) if k in tofu_forget_tr else v
    return out


@derived("closer_look_mu", "closer-look MU: harmonic mean of R, P, TR, TE, CS, ES on the non-forget sets")
def closer_look_mu(values: Mapping[str, float | None]) -> float | None:
    """:func:`bench.scores.closer_look_mu` over the set aggregates ``values`` (labels only
    name them). TR must be retain-style ``mean(max(0, 1 − 1/R))`` (TOFU's retain truth
    ratio is exactly that). Higher = more utility kept."""
    return scores.closer_look_mu(values)


closer_look_mu.higher_is_better = True  # type: ignore[attr-defined]
closer_look_mu.applies_to = "aggregates of retain-like sets (derived)"  # type: ignore[attr-defined]


@derived("closer_look_fe", "closer-look FE: 1 - mean(R, P, TR, CS, ES) on the forget set")
def closer_look_fe(values: Mapping[str, float | None], tofu_forget_tr: Sequence[str] = ("truth_ratio",)
                   ) -> float | None:
    """:func:`bench.scores.closer_look_fe` over the forget set's five aggregates.

    The labels named in ``tofu_forget_tr`` (default ``"truth_ratio"``) hold TOFU's forget
    truth ratio ``mean(min(R, 1/R))`` and are turned into closer-look's
    ``1 − mean(min(R, 1/R))`` here (closer-look has no ``1e-10`` guard in ``min(R, 1/R)``;
    the difference is below 1e-9 for any R the guard leaves finite). Higher = more forgotten.
    """
    return scores.closer_look_fe(_closer_look_form(values, tuple(tofu_forget_tr)))


closer_look_fe.higher_is_better = True  # type: ignore[attr-defined]
closer_look_fe.applies_to = "aggregates of the forget set (derived)"  # type: ignore[attr-defined]
