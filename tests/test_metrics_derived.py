"""Golden values for the derived TOFU metrics: forget quality and model utility."""

from __future__ import annotations

import math

import pytest

from bench.errors import BenchError
from bench.metrics import metric_kind
from bench.metrics.derived import forget_quality, model_utility
from bench.registry import METRICS


def test_registered_as_derived():
    assert METRICS.get("forget_quality") is forget_quality
    assert METRICS.get("model_utility") is model_utility
    assert metric_kind(forget_quality) == "derived"
    assert metric_kind(METRICS.get("probability")) == "item"
    with pytest.raises(TypeError):
        metric_kind(len)


# ---------------------------------------------------------------- forget quality


def test_identical_samples_give_p_one():
    r = [0.2, 0.5, 0.9, 1.3, 0.7]
    assert forget_quality(r, list(r)) == {"forget_quality": 1.0, "log10_forget_quality": 0.0}


def test_separated_samples_exact_p_value():
    # D = 1; exact two-sided p = (# of the C(6,3) = 20 arrangements with D = 1) / 20 = 2/20
    fq = forget_quality([0.1, 0.2, 0.3], [0.4, 0.5, 0.6])
    assert fq["forget_quality"] == pytest.approx(0.1)
    assert fq["log10_forget_quality"] == pytest.approx(-1.0)


def test_orientation_invariant():
    a, b = [0.1, 0.3, 0.35, 0.8, 2.0], [0.25, 0.5, 0.6, 0.9, 1.5, 3.0]
    fq = forget_quality(a, b)["forget_quality"]
    inv = forget_quality([1 / x for x in a], [1 / x for x in b])["forget_quality"]
    assert fq == pytest.approx(inv)
    assert 0 < fq < 1


def test_missing_and_nan_dropped_inf_kept():
    # None and NaN are left out: same as the separated case above
    fq = forget_quality([0.1, None, 0.2, math.nan, 0.3], [0.4, 0.5, 0.6])
    assert fq["forget_quality"] == pytest.approx(0.1)
    # inf is just the largest rank: [1, 2, inf] vs [1, 2, 3] differ in one place, D = 1/3
    assert forget_quality([1.0, 2.0, math.inf], [1.0, 2.0, 3.0])["forget_quality"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "a, b, label",
    [([], [0.5], "unlearned"), ([0.5], [], "reference"), ([None, math.nan], [0.5], "unlearned")],
)
def test_empty_input_raises(a, b, label):
    with pytest.raises(BenchError, match=f"no defined truth-ratio values for the {label} model"):
        forget_quality(a, b)


# ---------------------------------------------------------------- model utility

NINE = [f"{s}_{m}" for s in ("retain", "ra", "wf") for m in ("prob", "rouge", "tr")]


def test_model_utility_harmonic_mean():
    vals = dict(zip(NINE, [1.0, 0.5, 0.25] * 3))
    # 9 / (3·1 + 3·2 + 3·4) = 9/21
    assert model_utility(vals) == pytest.approx(9 / 21)
    assert model_utility(dict.fromkeys(NINE, 0.5)) == pytest.approx(0.5)


def test_model_utility_zero_and_missing():
    vals = dict.fromkeys(NINE, 0.5)
    assert model_utility({**vals, "wf_tr": 0.0}) == 0.0
    assert model_utility({**vals, "ra_rouge": None}) is None
    assert model_utility({**vals, "ra_rouge": math.nan}) is None


def test_model_utility_bad_input():
    with pytest.raises(BenchError, match="no values"):
        model_utility({})
    with pytest.raises(BenchError, match="value 'retain_tr' is negative"):
        model_utility({**dict.fromkeys(NINE, 0.5), "retain_tr": -0.1, "ra_prob": None})
