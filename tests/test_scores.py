"""Golden values of the public scoring API (bench.scores): hand-computed cases, edge cases
and the published-table checks of SPEC.md."""

from __future__ import annotations

import math
import statistics

import pytest

from bench import scores
from bench.errors import BenchError

# closer-look Table 8 (real-world task), rows "Initial" and "GA+GD":
# neighbour R, P, TR, TE, CS, ES -> MU; forget R, P, TR, CS, ES -> FE
TABLE8 = {
    "Initial": ((0.7803, 0.3375, 0.5625, 0.8854, 0.9819, 0.6275), 0.6145,
                (0.8057, 0.3898, 0.6071, 0.9875, 0.6900), 0.3040),
    "GA+GD": ((0.6493, 0.0589, 0.6880, 0.8160, 0.7265, 0.4825), 0.2436,
              (0.0013, 0.0000, 0.4896, 0.0222, 0.0025), 0.8969),
    "ME+GD": ((0.7063, 0.2107, 0.5838, 0.9023, 0.8203, 0.4900), 0.4901,
              (0.0205, 0.0017, 0.2291, 0.0904, 0.0025), 0.9312),
}


def test_public_api_is_exactly_the_issue_list():
    assert sorted(scores.__all__) == sorted([
        "harmonic_mean", "model_utility", "closer_look_mu", "closer_look_fe", "forget_quality",
        "roc_auc", "privleak", "semeval_mia_score", "semeval_task_aggregate", "semeval_final"])
    for name in scores.__all__:
        assert getattr(scores, name).__doc__, name


# ---------------------------------------------------------------- harmonic mean / utility


def test_harmonic_mean_golden_and_edges():
    assert scores.harmonic_mean([1.0, 2.0, 4.0]) == pytest.approx(3 / (1 + 0.5 + 0.25))  # 12/7
    assert scores.harmonic_mean({"a": 0.5, "b": 0.5}) == pytest.approx(0.5)
    assert scores.harmonic_mean([0.9, 0.0, 0.8]) == 0.0  # one zero -> zero
    assert scores.harmonic_mean([0.9, None, 0.8]) is None  # missing is never dropped
    assert scores.harmonic_mean([0.9, float("nan")]) is None
    with pytest.raises(BenchError, match="negative"):
        scores.harmonic_mean([0.5, -0.1])
    with pytest.raises(BenchError, match="no values"):
        scores.harmonic_mean([])
    # harmonic, not arithmetic or geometric: 1 and 1/3 -> 0.5 (arith 2/3, geo 0.577)
    assert scores.harmonic_mean([1.0, 1 / 3]) == pytest.approx(0.5)


def test_model_utility_matches_scipy_hmean_and_accepts_sequences():
    from scipy.stats import hmean

    vals = [0.9, 0.4, 0.55, 0.7, 0.3, 0.6, 0.8, 0.45, 0.5]
    assert scores.model_utility(vals) == pytest.approx(float(hmean(vals)))
    assert scores.model_utility(dict(zip("abcdefghi", vals))) == pytest.approx(float(hmean(vals)))
    assert scores.model_utility(vals[:-1] + [0.0]) == 0.0
    assert scores.model_utility(vals[:-1] + [None]) is None


@pytest.mark.parametrize("row", sorted(TABLE8))
def test_closer_look_table8(row):
    mu_in, mu, fe_in, fe = TABLE8[row]
    # the table's inputs are rounded to 4 places: for GA+GD, P = 0.0589 +- 5e-5 alone moves
    # the harmonic mean by ~1.5e-4; the paper's own check row (Initial) is held to 6e-5
    tol = 6e-5 if row == "Initial" else 2e-4
    assert scores.closer_look_mu(mu_in) == pytest.approx(mu, abs=tol)
    assert scores.closer_look_fe(fe_in) == pytest.approx(fe, abs=6e-5)


def test_closer_look_mu_fe_edges():
    assert scores.closer_look_mu([0.8, 0.0, 0.7]) == 0.0
    assert scores.closer_look_fe([0.2, 0.4]) == pytest.approx(0.7)  # 1 - arithmetic mean
    assert scores.closer_look_fe([0.2, None]) is None
    with pytest.raises(BenchError):
        scores.closer_look_fe([])


# ---------------------------------------------------------------- forget quality


def test_forget_quality_golden():
    # two disjoint samples of 3: the exact two-sided KS p-value is 2 / C(6,3) = 0.1
    assert scores.forget_quality([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(0.1)
    assert scores.forget_quality([0.3, 0.5, 2.0], [0.3, 0.5, 2.0]) == pytest.approx(1.0)
    # rank-only: r and 1/r give the same p-value when both sides are inverted ...
    a, b = [0.1, 0.2, 0.3, 0.4, 0.5], [0.15, 0.25, 0.35, 0.45, 0.6]
    inv = scores.forget_quality([1 / x for x in a], [1 / x for x in b])
    assert scores.forget_quality(a, b) == pytest.approx(inv)
    # ... but not when only one is (mixing orientations is a bug this test would catch)
    assert scores.forget_quality(a, [1 / x for x in b]) != pytest.approx(scores.forget_quality(a, b))
    assert scores.forget_quality([1.0, None, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(0.1)


# ---------------------------------------------------------------- ROC AUC


def test_roc_auc_golden_ties_and_direction():
    # pairs (member, non-member): (3,1)=1 (3,2)=1 (2,1)=1 (2,2)=0.5 -> 3.5/4
    assert scores.roc_auc([3.0, 2.0], [1.0, 2.0]) == pytest.approx(0.875)
    assert scores.roc_auc([5.0, 6.0], [1.0, 2.0]) == 1.0  # members score higher -> 1
    assert scores.roc_auc([1.0, 2.0], [5.0, 6.0]) == 0.0  # the other way -> 0, not 1
    assert scores.roc_auc([0.3, 0.3, 0.3], [0.3, 0.3]) == 0.5  # all equal
    assert scores.roc_auc([1.0, None, 3.0], [2.0]) == pytest.approx(0.5)


def test_roc_auc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    m = [-1.2, -0.4, -0.4, -2.0, -0.1, -0.9, -0.4]
    n = [-1.5, -0.4, -3.0, -0.8, -0.9, -2.2]
    want = roc_auc_score([1] * len(m) + [0] * len(n), m + n)
    assert scores.roc_auc(m, n) == pytest.approx(want)
    # open-unlearning: scores signed like a loss (-ours), forget labelled 0 -> same AUC
    ou = roc_auc_score([0] * len(m) + [1] * len(n), [-x for x in m + n])
    assert scores.roc_auc(m, n) == pytest.approx(ou)


def test_roc_auc_empty_side():
    with pytest.raises(BenchError, match="both sides"):
        scores.roc_auc([], [1.0])
    with pytest.raises(BenchError, match="both sides"):
        scores.roc_auc([1.0], [None])


# ---------------------------------------------------------------- PrivLeak, SemEval


def test_privleak_golden_and_sign():
    # memorised: AUC 0.9 -> AUC' 0.1; reference 0.5 -> (0.1 - 0.5)/0.5 * 100 = -80
    assert scores.privleak(0.9, 0.5) == pytest.approx(-80.0)
    # over-unlearned: AUC 0.3 -> AUC' 0.7 -> +40 (a wrong 1-x convention flips these signs)
    assert scores.privleak(0.3, 0.5) == pytest.approx(40.0)
    # MUSE News published AUC'_retrained = 0.4772 (ours 0.5228); a fully memorised model -> -100
    assert scores.privleak(1.0, 1 - 0.4772) == pytest.approx(-100.0)
    assert scores.privleak(1 - 0.4772, 1 - 0.4772) == pytest.approx(0.0)
    assert scores.privleak(0.6, 0.7) == pytest.approx(((0.4 - 0.3) / 0.3) * 100)
    assert scores.privleak(None, 0.5) is None
    assert scores.privleak(0.7, 1.0) is None  # AUC'_ref = 0: undefined


def test_semeval_mia_score():
    assert scores.semeval_mia_score(0.5) == 1.0
    assert scores.semeval_mia_score(0.501) == pytest.approx(0.998)  # Table 1 "Ours" (published 0.997)
    assert scores.semeval_mia_score(0.022) == pytest.approx(0.044, abs=1e-9)  # model1: 0.045 published
    assert scores.semeval_mia_score(0.818) == pytest.approx(0.364)  # model2
    assert scores.semeval_mia_score(0.2) == pytest.approx(scores.semeval_mia_score(0.8)) == pytest.approx(0.4)
    assert scores.semeval_mia_score(None) is None


def _twelve(forget_vals, retain_vals):
    keys = [f"Task{t}/{s}" for t in (1, 2, 3) for s in ("regurgitation", "knowledge")]
    return dict(zip(keys, forget_vals)), dict(zip(keys, retain_vals))


def test_semeval_task_aggregate_golden():
    f, r = _twelve([0.1, 0.2, 0.3, 0.1, 0.2, 0.4], [0.9, 0.8, 0.7, 0.6, 0.9, 0.5])
    want = statistics.harmonic_mean([0.9, 0.8, 0.7, 0.9, 0.8, 0.6, 0.9, 0.8, 0.7, 0.6, 0.9, 0.5])
    assert scores.semeval_task_aggregate(f, r) == pytest.approx(want)
    # forget taken as 1 - x: passing the forget values straight would give another number
    assert scores.semeval_task_aggregate(f, r) != pytest.approx(
        statistics.harmonic_mean(list(f.values()) + list(r.values())))
    f1 = dict(f, **{"Task2/knowledge": 1.0})  # a forget value of 1 -> 1 - 1 = 0 -> aggregate 0
    assert scores.semeval_task_aggregate(f1, r) == 0.0
    r0 = dict(r, **{"Task3/regurgitation": 0.0})
    assert scores.semeval_task_aggregate(f, r0) == 0.0
    assert scores.semeval_task_aggregate(dict(f, **{"Task1/knowledge": None}), r) is None
    with pytest.raises(BenchError, match="expected 12"):
        scores.semeval_task_aggregate({"Task1/knowledge": 0.1}, r)


def test_semeval_final_table1():
    # seed 000 Table 1: (task aggregate, MIA score, MMLU) -> final
    assert scores.semeval_final(0.939, 0.997, 0.480) == pytest.approx(0.806, abs=2e-3)
    assert scores.semeval_final(0.968, 0.045, 0.431) == pytest.approx(0.481, abs=2e-3)  # model1
    assert scores.semeval_final(0.659, 0.364, 0.491) == pytest.approx(0.504, abs=2e-3)  # model2
    assert scores.semeval_final(0.939, 0.997, 0.480) == pytest.approx((0.939 + 0.997 + 0.480) / 3)


def test_semeval_final_gate():
    assert scores.semeval_final(0.9, 0.9, 0.30, mmlu_gate=0.371) is None  # below the gate: unranked
    assert scores.semeval_final(0.9, 0.9, 0.371, mmlu_gate=0.371) == pytest.approx((0.9 + 0.9 + 0.371) / 3)
    assert scores.semeval_final(0.9, 0.9, 0.30) == pytest.approx(0.7)  # no gate: the plain mean
    assert scores.semeval_final(0.9, None, 0.5) is None
    assert math.isclose(scores.semeval_final(0.0, 0.0, 0.0), 0.0)
