"""Membership-inference scores per item, and the set-level AUC / PrivLeak / SemEval MIA score.

Per-item scores (``mia_loss``, ``mia_zlib``, ``mia_min_k``, ``mia_min_k_plus_plus``) are
all signed **higher = "more likely a member"** and read the token log-probs of the item's
text given its prompt: ``ctx.continuation(item.answer)`` after ``ctx.prompt_for(item)``.
On a QA set (format ``model``) that is the answer (+ the end-of-turn/EOS marker) after the
question — the *same* ``LogLikelihood`` request as ``probability`` (no extra pass); on a
``document`` set it is the whole text after BOS (the backend windows long texts).
``mia_min_k_plus_plus`` needs full-distribution statistics: a ``TokenStats`` request.

With ``lp_t`` the natural-log probability of token ``t`` of the n scored tokens:

* ``mia_loss``: ``−L̄ = mean_t lp_t``.
* ``mia_zlib``: ``−L̄ / len(zlib.compress(text.encode("utf-8")))`` — the *mean* NLL over
  the zlib size in bytes of ``item.answer`` (default compression level), as
  open-unlearning, MUSE and RWKU compute it.
* ``mia_min_k``: mean of the lowest ``m = ⌊k·n⌋`` of the ``lp_t`` (k = 0.4 default).
* ``mia_min_k_plus_plus``: ``z_t = (lp_t − μ_t) / σ_t`` with ``μ_t = Σ_v p_v log p_v`` and
  ``σ_t² = max(Σ_v p_v (log p_v)² − μ_t², clamp)``, then the mean of the lowest ``m`` z.

Options that tell the references apart (defaults = open-unlearning, which TOFU follows):

* ``min_one`` (min-k, min-k++): ``True`` keeps at least one token (open-unlearning's
  ``max(1, int(k·n))``); ``False`` takes ``int(k·n)`` as MUSE and RWKU do — with
  ``k·n < 1`` there is no token and the value is missing (``None``; MUSE's numpy gives NaN).
* ``drop_last`` (min-k, min-k++): open-unlearning's token-wise log-probs stop one short
  of the labelled tokens (``actual_indices[:-1]``, "ignore eos prediction"). ``None``
  (default) drops the final token on ``model``-format sets (the EOS marker) and keeps every
  token on ``raw``/``document`` sets (MUSE, RWKU and the SemEval loss attack score all
  tokens after BOS); ``True``/``False`` force it. ``mia_loss`` / ``mia_zlib`` keep every
  token: open-unlearning computes them from ``evaluate_probability``'s ``avg_loss`` over all
  labelled tokens, EOS included. (SPEC.md says all of open-unlearning's MIA scores drop the
  EOS; its code drops it for min-k / min-k++ only, and we follow the code.)
* ``clamp`` (min-k++): open-unlearning clamps ``σ²`` at 1e-6; RWKU does not clamp
  (``clamp=None``; a zero-variance position then has an undefined z and the item is
  missing).

An item with no scored token is missing (``None``; open-unlearning returns 0 there).
open-unlearning's own attack scores are the negatives of these (higher = non-member) with
the forget set labelled 0, which gives the same AUC as ours.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Any, ClassVar

from bench import scores
from bench.errors import BenchError
from bench.items import Item
from bench.metrics.base import EvalContext, Metric
from bench.metrics.common import check_bool, check_responses, require_field
from bench.metrics.derived import derived
from bench.registry import METRICS
from bench.requests import (
    LogLikelihood,
    LogLikelihoodResponse,
    Request,
    Response,
    TokenStats,
    TokenStatsResponse,
)

#: MUSE's published ``AUC'_retrained`` (its convention: forget labelled 0) for min-40 % on
#: ``privleak/{forget,holdout}``, from ``constants.py`` ``AUC_RETRAIN[...]["forget_holdout_Min-40%"]``.
MUSE_AUC_RETRAINED = {"news": 0.4772, "books": 0.5393}
#: open-unlearning's ``ref_value`` when no retain-model log is given (``privleak.yaml``).
OPEN_UNLEARNING_REF_AUC = 0.5

AUC_CONVENTION = ("ROC AUC with members positive and higher score = member "
                  "(1 = every member above every non-member, 0.5 = chance; MUSE's AUC is 1 - this)")


def _check_k(metric: str, k: float) -> float:
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0 < float(k) <= 1:
        raise BenchError(f"metric '{metric}': option k must be a fraction in (0, 1] (got {k!r})")
    return float(k)


def lowest_mean(values: Sequence[float], k: float, min_one: bool = True) -> float | None:
    """Mean of the lowest ``⌊k·n⌋`` values (at least one if ``min_one``); ``None`` when none."""
    n = len(values)
    m = int(n * k)
    if min_one:
        m = max(1, m)
    m = min(m, n)
    if m == 0:
        return None
    low = sorted(values)[:m]
    return sum(low) / m


def zlib_size(text: str) -> int:
    """``len(zlib.compress(text.encode("utf-8")))`` (default level), as all three references."""
    return len(zlib.compress(text.encode("utf-8")))


class _MIAMetric(Metric):
    """One likelihood request of ``item.answer`` (the QA answer or the whole document)."""

    higher_is_better: ClassVar[bool | None] = True
    applies_to: ClassVar[str] = "QA answers (format model/raw) or whole documents (format document)"
    stats: ClassVar[bool] = False

    def requests(self, item: Item, ctx: EvalContext) -> list[Request]:
        text = require_field(self.name, item, "answer")
        cls = TokenStats if self.stats else LogLikelihood
        return [cls(ctx.prompt_for(item), ctx.continuation(text))]

    def score(self, item: Item, responses: Sequence[Response], ctx: EvalContext) -> float | None:
        check_responses(self.name, responses, 1, TokenStatsResponse if self.stats else LogLikelihoodResponse)
        return self.value(item, responses[0], ctx)  # type: ignore[arg-type]

    def value(self, item: Item, resp: LogLikelihoodResponse, ctx: EvalContext) -> float | None:
        raise NotImplementedError


@METRICS.register("mia_loss", "MIA loss score -mean NLL of the answer/document (higher = member)")
class MIALoss(_MIAMetric):
    """``−L̄`` over every scored token (EOS included on QA sets, as open-unlearning)."""

    name: ClassVar[str] = "mia_loss"

    def value(self, item: Item, resp: LogLikelihoodResponse, ctx: EvalContext) -> float | None:
        return None if resp.num_tokens == 0 else -resp.mean_nll


@METRICS.register("mia_zlib", "MIA zlib score -mean NLL / zlib bytes of the text (higher = member)")
class MIAZlib(_MIAMetric):
    """``−L̄ / zlib_size(item.answer)``."""

    name: ClassVar[str] = "mia_zlib"

    def value(self, item: Item, resp: LogLikelihoodResponse, ctx: EvalContext) -> float | None:
        if resp.num_tokens == 0:
            return None
        return -resp.mean_nll / zlib_size(item.answer)


class _MinK(_MIAMetric):
    def __init__(self, k: float = 0.4, min_one: bool = True, drop_last: bool | None = None):
        self.k = _check_k(self.name, k)
        self.min_one = check_bool(self.name, "min_one", min_one)
        self.drop_last = None if drop_last is None else check_bool(self.name, "drop_last", drop_last)

    def cut(self, seq: Sequence[float], ctx: EvalContext) -> Sequence[float]:
        drop = self.drop_last if self.drop_last is not None else ctx.format == "model"
        return seq[:-1] if drop else seq


@METRICS.register("mia_min_k", "MIA min-k%: mean of the lowest k% token log-probs (higher = member)")
class MIAMinK(_MinK):
    """Min-k% prob (Shi et al. 2024); options ``k``, ``min_one``, ``drop_last``."""

    name: ClassVar[str] = "mia_min_k"

    def value(self, item: Item, resp: LogLikelihoodResponse, ctx: EvalContext) -> float | None:
        lp = self.cut(resp.token_logprobs, ctx)
        return lowest_mean(list(lp), self.k, self.min_one) if lp else None


@METRICS.register("mia_min_k_plus_plus", "MIA min-k%++: mean of the lowest k% of (log p - mu)/sigma (higher = member)")
class MIAMinKPlusPlus(_MinK):
    """Min-k%++ (Zhang et al. 2025) from ``TokenStats`` μ/σ²; options ``k``, ``min_one``,
    ``drop_last``, ``clamp``."""

    name: ClassVar[str] = "mia_min_k_plus_plus"
    stats: ClassVar[bool] = True

    def __init__(self, k: float = 0.4, min_one: bool = True, drop_last: bool | None = None,
                 clamp: float | None = 1e-6):
        super().__init__(k, min_one, drop_last)
        self.clamp = None if clamp is None else float(clamp)

    def value(self, item: Item, resp: LogLikelihoodResponse, ctx: EvalContext) -> float | None:
        assert isinstance(resp, TokenStatsResponse)
        if len(resp.mu) != resp.num_tokens or len(resp.var) != resp.num_tokens:
            raise BenchError(f"metric '{self.name}': item '{item.id}': token stats do not cover every token")
        lp, mu, var = (list(self.cut(s, ctx)) for s in (resp.token_logprobs, resp.mu, resp.var))
        if not lp:
            return None
        z = []
        for a, m, v in zip(lp, mu, var):
            if self.clamp is not None:
                v = max(v, self.clamp)
            if v <= 0:
                return None
            z.append((a - m) / math.sqrt(v))
        return lowest_mean(z, self.k, self.min_one)


# ------------------------------------------------------------------ derived (set level)


@derived("mia_auc", "ROC AUC of an MIA score, members positive, higher score = member")
def mia_auc(members: Sequence[float | None], nonmembers: Sequence[float | None],
            convention: str = AUC_CONVENTION) -> float:
    """:func:`bench.scores.roc_auc` of the per-item scores of a member set (e.g. TOFU
    ``forget``) against a non-member set (``holdout``). Convention: :data:`AUC_CONVENTION`;
    :func:`auc_nodes` passes it as the node's ``convention`` option so that it is recorded
    with the node in ``results.json`` (any other value is refused: there is one convention)."""
    if convention != AUC_CONVENTION:
        raise BenchError(f"mia_auc: convention {convention!r} is not computed; the AUC is {AUC_CONVENTION}")
    return scores.roc_auc(members, nonmembers)


mia_auc.convention = AUC_CONVENTION  # type: ignore[attr-defined]
mia_auc.higher_is_better = None  # type: ignore[attr-defined]  # 0.5 is the unlearning goal
mia_auc.applies_to = "per-item MIA scores of a member and a non-member set (derived)"  # type: ignore[attr-defined]


@derived("privleak", "MUSE PrivLeak % from the MIA AUC vs a retrained/retain-only reference AUC")
def privleak(auc: float | None, reference_auc: float | None = None,
             reference_source: str | None = None) -> float | None:
    """:func:`bench.scores.privleak` (percent; ≈ −100 nothing unlearned, 0 = like the
    reference, > 0 over-unlearned).

    ``reference_auc`` comes from the reference run's own AUC node (role ``retain`` on TOFU,
    as open-unlearning; ``retrained`` on MUSE) or, without a stored run, as a node option
    with ``reference_source`` naming it (e.g. MUSE's published News constant:
    ``reference_auc = 1 − 0.4772``, ``reference_source = "MUSE published AUC'_retrained
    (news)"``); the option is recorded with the node. Both AUCs in :data:`AUC_CONVENTION`.
    """
    if reference_auc is None:
        raise BenchError("privleak: no reference AUC (give a reference run's AUC node or the "
                         "reference_auc option with its reference_source)")
    return scores.privleak(auc, reference_auc)


privleak.higher_is_better = None  # type: ignore[attr-defined]  # 0 is the goal
privleak.applies_to = "an MIA AUC and the reference model's AUC (derived)"  # type: ignore[attr-defined]


@derived("semeval_mia_score", "SemEval-2025 MIA score 1 - 2|AUC - 0.5| (1 = chance-level attack)")
def semeval_mia_score(auc: float | None) -> float | None:
    """:func:`bench.scores.semeval_mia_score` of a loss-attack AUC. Higher = better."""
    return scores.semeval_mia_score(auc)


semeval_mia_score.higher_is_better = True  # type: ignore[attr-defined]
semeval_mia_score.applies_to = "the loss-attack AUC on member vs non-member documents (derived)"  # type: ignore[attr-defined]


# ------------------------------------------------------------------ what each benchmark runs

def benchmark_specs(benchmark: str) -> list[Any]:
    """The per-item MIA :class:`~bench.items.MetricSpec` list each benchmark scores with its
    own conventions (put them on the member and non-member sets):

    * ``"tofu"`` (open-unlearning): loss, zlib, min-k and min-k++ at k = 0.4, at least one
      token, the final EOS dropped for min-k / min-k++ (the defaults);
    * ``"muse"``: min-40 % as MUSE's ``privleak`` (``int(0.4·n)`` tokens, documents: every
      token after BOS) — PrivLeak's score;
    * ``"rwku"``: loss, zlib and min-k++ at k = 0.2 with ``int(k·n)`` and no σ² clamp,
      as RWKU's ``eval_mia`` (per-set means; RWKU reports no AUC);
    * ``"semeval"``: the loss attack.
    """
    from bench.items import MetricSpec

    if benchmark == "tofu":
        return [MetricSpec("mia_loss"), MetricSpec("mia_zlib"), MetricSpec("mia_min_k", {"k": 0.4}),
                MetricSpec("mia_min_k_plus_plus", {"k": 0.4})]
    if benchmark == "muse":
        return [MetricSpec("mia_min_k", {"k": 0.4, "min_one": False})]
    if benchmark == "rwku":
        return [MetricSpec("mia_loss"), MetricSpec("mia_zlib"),
                MetricSpec("mia_min_k_plus_plus", {"k": 0.2, "min_one": False, "clamp": None})]
    if benchmark == "semeval":
        return [MetricSpec("mia_loss")]
    raise BenchError(f"benchmark_specs: unknown benchmark {benchmark!r} (tofu, muse, rwku, semeval)")


def auc_nodes(members: str, nonmembers: str, attacks: Sequence[str], *, privleak_attack: str | None = None,
              reference_role: str | None = None, reference_auc: float | None = None,
              reference_source: str | None = None, semeval: bool = False) -> list[Any]:
    """Graph nodes for MIA AUCs between sets ``members`` and ``nonmembers``:
    ``<attack>_auc`` per attack (members positive), then optionally ``privleak`` on
    ``privleak_attack``'s AUC against a reference run's own node (``reference_role``:
    ``"retain"`` for TOFU, ``"retrained"`` for MUSE) or a constant ``reference_auc``
    recorded with ``reference_source``, and ``semeval_mia_score`` of the first attack."""
    from bench.graph import Derived, Ref

    nodes = [Derived("mia_auc", {"members": Ref(f"{members}/{a}"), "nonmembers": Ref(f"{nonmembers}/{a}")},
                     options={"convention": AUC_CONVENTION}, key=f"{a}_auc") for a in attacks]
    if privleak_attack is not None:
        key = f"@{privleak_attack}_auc"
        if reference_role is not None:
            nodes.append(Derived("privleak", {"auc": Ref(key), "reference_auc": Ref(key, role=reference_role)}))
        elif reference_auc is not None:
            nodes.append(Derived("privleak", {"auc": Ref(key)},
                                 options={"reference_auc": reference_auc, "reference_source": reference_source or ""}))
        else:
            raise BenchError("auc_nodes: privleak needs reference_role or reference_auc")
    if semeval:
        nodes.append(Derived("semeval_mia_score", {"auc": Ref(f"@{attacks[0]}_auc")}))
    return nodes


#: MUSE-News without a stored retrained run: its published constant, in our AUC convention
MUSE_NEWS_REFERENCE = {"reference_auc": 1 - MUSE_AUC_RETRAINED["news"],
                       "reference_source": "MUSE published AUC'_retrained = 0.4772 (news, forget_holdout_Min-40%)"}
