"""RWKU (Jin et al. 2024) scores, as its ``eval/eval_forget.py``, ``eval_neighbor.py`` and
``eval_fluency.py``.

* ``rwku_rouge_l``: ROUGE-L **recall** of the answer against ``item.answer`` with the
  ``rouge`` package (``Rouge().get_scores(hyp, ref)[0]["rouge-l"]["r"]``; RWKU's
  ``get_scores(avg=True)`` is the plain mean of these per-pair values, which is the set
  aggregate here). It is *not* ``rouge_score``: no lowercasing, no stemming, tokens are
  whitespace-separated words with sentences split at ``"."`` (so "Paris" and "paris," do
  not match), and the summary-level LCS recall divides by the number of *distinct*
  reference words ("the cat sat" vs "the cat sat on the mat": 3/5, where ``rouge_score``
  gives 3/6). An empty (or all-whitespace) answer becomes ``"NOANSWER"`` as in RWKU; an
  answer with no word left after the package's ``"."`` split (e.g. ``"..."``), on which
  RWKU's script would raise, scores 0. Generation: 30 new tokens, stop at a newline (the
  task's set settings). One eval set per probe level (forget level 1/2/3, neighbour 1/2)
  gives RWKU's per-level numbers. Higher = more recalled (forget: lower is the goal).
* ``rwku_fluency``: RWKU's ``compute_n_gram_entropy`` of each generation:
  ``mean_n(w_n · H_n)`` for n ∈ {2, 3}, weights 2/3 and 4/3, ``H_n`` the base-2 entropy of
  the n-gram frequency distribution of ``nltk.word_tokenize`` tokens; the set value is the
  arithmetic mean (RWKU's ``agg="arith"``). Higher = more fluent / less repetitive. No
  n-gram (fewer than 2 tokens) gives ``H_n = 0``.

``nltk.word_tokenize`` needs the ``punkt_tab`` data (RWKU calls ``nltk.download('punkt')``
at run time). Without it — an offline machine — we use the same pipeline with an
*untrained* ``PunktSentenceTokenizer`` (nltk's default parameters, no learned abbreviation
list) followed by nltk's ``NLTKWordTokenizer``, exactly what ``word_tokenize`` does apart
from the sentence model. The two differ only where the trained English model knows an
abbreviation (``"Dr. Smith"`` stays one sentence there, so ``"Dr."`` is one token; the
untrained splitter makes it ``"Dr"``, ``"."``). The tokenizer used is recorded in the
metric's options (``tokenizer``: ``"punkt"`` or ``"punkt-untrained"``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

from bench.errors import BenchError
from bench.items import Item
from bench.metrics.base import EvalContext, Metric
from bench.metrics.common import check_responses, require_field
from bench.metrics.scored import generation_request
from bench.registry import METRICS
from bench.requests import GenerateResponse, Request, Response

NOANSWER = "NOANSWER"
FLUENCY_NS = (2, 3)
FLUENCY_WEIGHTS = (2 / 3, 4 / 3)

_ROUGE: Any = None


def rouge_package_recall(hypothesis: str, reference: str) -> float:
    """``rouge.Rouge().get_scores(hyp, ref)[0]["rouge-l"]["r"]``; empty -> ``NOANSWER`` first."""
    global _ROUGE
    if not hypothesis.strip():
        hypothesis = NOANSWER
    hypothesis = hypothesis.strip()
    if not [s for s in reference.split(".") if s.strip()]:
        raise BenchError(f"rwku_rouge_l: reference {reference!r} has no word the rouge package can score")
    if not [s for s in hypothesis.split(".") if s.strip()]:
        return 0.0
    if _ROUGE is None:
        from rouge import Rouge

        _ROUGE = Rouge(metrics=["rouge-l"])
    return float(_ROUGE.get_scores(hypothesis, reference)[0]["rouge-l"]["r"])


@METRICS.register("rwku_rouge_l", "RWKU ROUGE-L recall with the rouge package (case-sensitive, no stemming)")
class RWKURougeL(Metric):
    """RWKU's ROUGE-L recall of the greedy answer (module docstring)."""

    name: ClassVar[str] = "rwku_rouge_l"
    higher_is_better: ClassVar[bool | None] = True
    applies_to: ClassVar[str] = "RWKU probe sets (forget level 1-3, neighbour level 1-2)"

    def requests(self, item: Item, ctx: EvalContext) -> list[Request]:
        return [generation_request(item, ctx)]

    def score(self, item: Item, responses: Sequence[Response], ctx: EvalContext) -> float | None:
        check_responses(self.name, responses, 1, GenerateResponse)
        return rouge_package_recall(responses[0].text, require_field(self.name, item, "answer"))  # type: ignore[union-attr]


def _punkt_available() -> bool:
    try:
        import nltk

        nltk.data.find("tokenizers/punkt_tab/english/")
        return True
    except LookupError:
        return False


def word_tokenize(text: str, tokenizer: str) -> list[str]:
    """``nltk.word_tokenize`` (``"punkt"``) or its offline twin (``"punkt-untrained"``)."""
    import nltk

    if tokenizer == "punkt":
        return nltk.word_tokenize(text)
    from nltk.tokenize import NLTKWordTokenizer, PunktSentenceTokenizer

    words = NLTKWordTokenizer()
    return [tok for sent in PunktSentenceTokenizer().tokenize(text) for tok in words.tokenize(sent)]


def ngram_entropy(tokens: Sequence[str], n: int) -> float:
    """Base-2 entropy of the n-gram frequency distribution (0 when there is no n-gram)."""
    grams = Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    total = sum(grams.values())
    if total == 0:
        return 0.0
    return -sum((c / total) * math.log2(c / total) for c in grams.values())


def fluency_value(tokens: Sequence[str]) -> float:
    """RWKU's ``compute_n_gram_entropy``: ``mean(2/3 · H_2, 4/3 · H_3)``."""
    parts = [w * ngram_entropy(tokens, n) for n, w in zip(FLUENCY_NS, FLUENCY_WEIGHTS)]
    return sum(parts) / len(parts)


@METRICS.register("rwku_fluency", "RWKU fluency: weighted 2/3-gram entropy (bits) of the generation, nltk words")
class RWKUFluency(Metric):
    """RWKU fluency of the greedy answer to a fluency instruction (module docstring);
    option ``tokenizer``: ``"auto"`` (punkt if its data is installed), ``"punkt"``,
    ``"punkt-untrained"``."""

    name: ClassVar[str] = "rwku_fluency"
    higher_is_better: ClassVar[bool | None] = True
    applies_to: ClassVar[str] = "generations to RWKU's fluency instructions (256 new tokens)"

    def __init__(self, tokenizer: str = "auto"):
        if tokenizer not in ("auto", "punkt", "punkt-untrained"):
            raise BenchError(f"metric 'rwku_fluency': option tokenizer must be auto, punkt or punkt-untrained (got {tokenizer!r})")
        if tokenizer == "auto":
            tokenizer = "punkt" if _punkt_available() else "punkt-untrained"
        elif tokenizer == "punkt" and not _punkt_available():
            raise BenchError("metric 'rwku_fluency': nltk's punkt_tab data is not installed "
                             "(python -m nltk.downloader punkt_tab, or tokenizer=punkt-untrained)")
        self.tokenizer = tokenizer

    def requests(self, item: Item, ctx: EvalContext) -> list[Request]:
        return [generation_request(item, ctx)]

    def score(self, item: Item, responses: Sequence[Response], ctx: EvalContext) -> float | None:
        check_responses(self.name, responses, 1, GenerateResponse)
        return fluency_value(word_tokenize(responses[0].text, self.tokenizer))  # type: ignore[union-attr]
