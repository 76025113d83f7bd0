"""The field's aggregate scores, for people who already have the numbers.

No model, no run: pass the per-set or per-item numbers you have and get the aggregate the
benchmark reports. The suite's own derived metrics (the nodes of :mod:`bench.graph`) call
these same functions, so a number computed here and one in ``results.json`` agree.

Conventions shared by every function:

* Inputs are plain floats (or sequences / mappings of floats). ``None`` or NaN means
  "missing"; a function that needs every input returns ``None`` when one is missing and
  never treats it as 0.
* Directions are stated per function; "higher = better" always means better for the
  benchmark's goal (an unlearned model that forgot and kept its utility).
* AUC follows the usual ROC convention throughout: **members are the positive class and a
  higher attack score means "more likely a member"** (:func:`roc_auc`). MUSE's published
  AUCs are ``1 − ours`` (it labels the forget set 0); :func:`privleak` converts.

Functions: :func:`harmonic_mean`, :func:`model_utility`, :func:`closer_look_mu`,
:func:`closer_look_fe`, :func:`forget_quality`, :func:`roc_auc`, :func:`privleak`,
:func:`semeval_mia_score`, :func:`semeval_task_aggregate`, :func:`semeval_final`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bench.errors import BenchError

__all__ = [
    "closer_look_fe",
    "closer_look_mu",
    "forget_quality",
    "harmonic_mean",
    "model_utility",
    "privleak",
    "roc_auc",
    "semeval_final",
    "semeval_mia_score",
    "semeval_task_aggregate",
]


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _items(values: Mapping[str, Any] | Iterable[Any]) -> list[tuple[str, Any]]:
    if isinstance(values, Mapping):
        return [(str(k), v) for k, v in values.items()]
    return [(f"#{i}", v) for i, v in enumerate(values)]


def harmonic_mean(values: Mapping[str, float | None] | Iterable[float | None], *, where: str = "harmonic_mean"
                  ) -> float | None:
    """Harmonic mean ``n / Σ 1/x`` of non-negative numbers (a sequence or a mapping's values).

    * Any value 0 -> 0.0 (the limit; ``statistics.harmonic_mean`` and ``scipy.stats.hmean``
      give 0 too). This is why one collapsed metric makes model utility 0.
    * Any value missing (``None``/NaN) -> ``None`` (never computed over the rest).
    * A negative value, or no value at all -> :class:`BenchError` naming it.
    """
    pairs = _items(values)
    if not pairs:
        raise BenchError(f"{where}: no values given")
    vals: list[float] = []
    for key, v in pairs:
        if _missing(v):
            return None
        v = float(v)
        if v < 0:
            raise BenchError(f"{where}: value {key} is negative ({v}); expected >= 0")
        vals.append(v)
    if any(v == 0 for v in vals):
        return 0.0
    return len(vals) / sum(1.0 / v for v in vals)


def model_utility(values: Mapping[str, float | None] | Sequence[float | None]) -> float | None:
    """TOFU model utility: harmonic mean of the 9 utility numbers (higher = better).

    The 9 are {retain, real authors, world facts} × {probability (plain on retain,
    normalised over the options on the other two), ROUGE-L recall, truth ratio retain-style
    ``mean(max(0, 1 − 1/R))``}, as open-unlearning's ``hm_aggregate``. Zero and missing
    handling as :func:`harmonic_mean` (one 0 -> 0; one missing -> ``None``). The count is
    not enforced here (a partial model utility is still a harmonic mean); the TOFU task
    passes exactly nine.
    """
    from bench.metrics.derived import model_utility as _mu

    mapping = values if isinstance(values, Mapping) else {f"#{i}": v for i, v in enumerate(values)}
    return _mu(mapping)


def closer_look_mu(values: Mapping[str, float | None] | Sequence[float | None]) -> float | None:
    """Closer-look (Yuan et al. 2025) model utility MU: harmonic mean of the six metrics
    R, P, TR, TE, CS, ES on every non-forget set (retain; on TOFU also real authors and
    world facts: 18 numbers; real-world task: the neighbour set's 6).

    Each input must already be in closer-look's "higher = performs the task" form: TR is
    ``max(0, 1 − 1/R)`` there. As closer-look's ``hmean``: one 0 -> 0; missing -> ``None``.
    Check: Table 8 "Initial" neighbour row (0.7803, 0.3375, 0.5625, 0.8854, 0.9819, 0.6275)
    gives 0.6145.
    """
    return harmonic_mean(values, where="closer_look_mu")


def closer_look_fe(values: Mapping[str, float | None] | Sequence[float | None]) -> float | None:
    """Closer-look forget efficacy FE = ``1 − mean(R, P, TR, CS, ES)`` on the forget set
    (token entropy excluded). Higher = more forgotten (1 = nothing of the answers left).

    The five inputs are in closer-look's "higher = performs the task" form; in particular
    TR on the forget set is ``1 − mean(min(R, 1/R))`` — *not* TOFU's forget truth ratio
    ``mean(min(R, 1/R))`` (pass ``1 − x`` of that). Arithmetic mean; missing -> ``None``.
    Check: Table 8 "Initial" forget row (0.8057, 0.3898, 0.6071, 0.9875, 0.6900) -> 0.3040.
    """
    pairs = _items(values)
    if not pairs:
        raise BenchError("closer_look_fe: no values given")
    if any(_missing(v) for _, v in pairs):
        return None
    return 1.0 - sum(float(v) for _, v in pairs) / len(pairs)


def forget_quality(unlearned_tr: Sequence[float | None], retain_tr: Sequence[float | None]) -> float:
    """TOFU forget quality: ``scipy.stats.ks_2samp(unlearned_tr, retain_tr).pvalue``.

    Inputs: per-item truth ratios on the forget set, of the unlearned model and of the
    retain-only model, both in the same orientation (the KS statistic only sees ranks, so
    ``R`` or ``1/R`` give the same p-value — never mix them). Missing values are dropped.
    Higher = closer to the retain-only model (1.0 for identical samples). Two-sided,
    scipy's default ``method="auto"``, as open-unlearning's ``ks_test``.
    """
    from bench.metrics.derived import forget_quality as _fq

    return _fq(unlearned_tr, retain_tr)["forget_quality"]


def roc_auc(members: Sequence[float | None], nonmembers: Sequence[float | None]) -> float:
    """ROC AUC of a membership-inference attack score.

    Convention: **members are the positive class, a higher score = "more likely a
    member"** (so pass ``−loss``, ``min-k%`` mean log-probs, ...). 1.0 = every member
    scores above every non-member (fully memorised), 0.5 = chance, 0.0 = every member below.
    Ties count one half (the Mann–Whitney U form, equal to ``sklearn.metrics.roc_auc_score``);
    all scores equal -> 0.5. open-unlearning's ``mia_*`` values are this AUC; MUSE's
    ``forget_holdout_*`` AUCs are ``1 − this``. Missing scores are dropped; an empty side ->
    :class:`BenchError`.
    """
    pos = [float(v) for v in members if not _missing(v)]
    neg = [float(v) for v in nonmembers if not _missing(v)]
    if not pos or not neg:
        raise BenchError(f"roc_auc: need scores on both sides ({len(pos)} members, {len(neg)} non-members)")
    # rank-based: U = Σ over member ranks − n_pos(n_pos+1)/2, average ranks for ties
    allv = sorted([(v, 1) for v in pos] + [(v, 0) for v in neg], key=lambda t: t[0])
    rank_sum, i = 0.0, 0
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and allv[j + 1][0] == allv[i][0]:
            j += 1
        avg_rank = (i + j) / 2 + 1
        rank_sum += avg_rank * sum(1 for k in range(i, j + 1) if allv[k][1] == 1)
        i = j + 1
    n_pos, n_neg = len(pos), len(neg)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def privleak(auc: float | None, reference_auc: float | None) -> float | None:
    """MUSE PrivLeak, in percent: ``(AUC'_unlearned − AUC'_ref) / AUC'_ref × 100``.

    ``auc`` and ``reference_auc`` are in :func:`roc_auc`'s convention (members positive);
    MUSE's ``AUC' = 1 − AUC`` is applied here, as MUSE's ``eval.py`` and open-unlearning's
    ``privleak`` compute it. The reference is a retrained (MUSE) or retain-only (TOFU,
    open-unlearning) model's AUC on the same forget/holdout sets; MUSE's published News
    constant ``AUC'_retrained = 0.4772`` is ``reference_auc = 0.5228`` here.

    ≈ −100: nothing unlearned (the forget set still looks like training data); 0: like the
    reference; > 0: over-unlearned (the forget set looks *less* like members than
    held-out data does). Closer to 0 is better. Missing input -> ``None``;
    ``reference_auc == 1`` (``AUC'_ref = 0``) -> ``None`` (undefined; open-unlearning's
    ``+1e-10`` guard would give ±1e12).
    """
    if _missing(auc) or _missing(reference_auc):
        return None
    a, r = 1.0 - float(auc), 1.0 - float(reference_auc)  # type: ignore[arg-type]
    if r == 0:
        return None
    return (a - r) / r * 100.0


def semeval_mia_score(auc: float | None) -> float | None:
    """SemEval-2025 Task 4 MIA score ``1 − 2·|AUC − 0.5|`` (higher = better; 1 at chance).

    ``auc`` is the loss attack's ROC AUC (members positive, score ``−mean NLL``), as the
    organisers' ``compute_auc``. Symmetric, so AUC and ``1 − AUC`` give the same score.
    Missing -> ``None``.
    """
    if _missing(auc):
        return None
    return 1.0 - 2.0 * abs(float(auc) - 0.5)  # type: ignore[arg-type]


SEMEVAL_TASKS = ("Task1", "Task2", "Task3")
SEMEVAL_SCORES = ("regurgitation", "knowledge")


def semeval_task_aggregate(forget: Mapping[str, float | None], retain: Mapping[str, float | None],
                           *, expected: int | None = 12) -> float | None:
    """SemEval-2025 Task 4 task aggregate (higher = better).

    ``forget`` / ``retain`` map ``"Task1/regurgitation"``, ``"Task1/knowledge"``, ...
    (Task1-3 × regurgitation, knowledge: 6 per split) to the split's per-subtask means:
    regurgitation = mean ROUGE-L recall on ``sc`` items, knowledge = mean exact match on
    ``qa`` items. The aggregate is ``statistics.harmonic_mean`` of the 12 numbers with every
    **forget** value taken as ``1 − x`` (forgetting is the goal there), retain values as they
    are. One 0 (a forget value of 1 or a retain value of 0) -> 0. Missing -> ``None``.
    ``expected`` (default 12) is the number of inputs required in all (``None``: any).
    """
    vals: dict[str, float | None] = {}
    for split, m in (("forget", forget), ("retain", retain)):
        for key, v in m.items():
            vals[f"{split}/{key}"] = None if _missing(v) else (1.0 - float(v) if split == "forget" else float(v))  # type: ignore[arg-type]
    if expected is not None and len(vals) != expected:
        raise BenchError(f"semeval_task_aggregate: expected {expected} values "
                         f"(Task1-3 x regurgitation/knowledge x forget/retain), got {len(vals)}")
    return harmonic_mean(vals, where="semeval_task_aggregate")


def semeval_final(task_aggregate: float | None, mia_score: float | None, mmlu: float | None,
                  *, mmlu_gate: float | None = None) -> float | None:
    """SemEval-2025 Task 4 final score: arithmetic mean of task aggregate, MIA score and MMLU
    accuracy (all higher = better). Check: seed 000 Table 1 "Ours" (0.939, 0.997, 0.480)
    -> 0.805 (published 0.806 from unrounded inputs).

    ``mmlu_gate``: the ranking's MMLU threshold (0.371 for the 7B track, 75 % of the
    starting model); a model below it is not ranked and gets ``None``. Without a gate the
    mean is returned whatever the MMLU. Missing input -> ``None``.
    """
    parts = (task_aggregate, mia_score, mmlu)
    if any(_missing(v) for v in parts):
        return None
    if mmlu_gate is not None and float(mmlu) < mmlu_gate:  # type: ignore[arg-type]
        return None
    return sum(float(v) for v in parts) / 3.0  # type: ignore[arg-type]
