"""Bootstrap confidence intervals: seeded, scipy's percentile interval, recorded settings."""

from __future__ import annotations

import numpy as np
import pytest

from bench.errors import BenchError
from bench.graph import Derived, Ref, Results, compute
from bench.metrics.truth_ratio import aggregate_forget
from bench.metrics.uncertainty import bootstrap_ci
from bench.task import SetResult

VALS = [0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.55, 0.05, 0.6, 0.3]


def test_bootstrap_seeded_and_equal_to_scipy():
    from scipy.stats import bootstrap

    a = bootstrap_ci(VALS, n_resamples=2000, seed=7)
    assert a == bootstrap_ci(VALS, n_resamples=2000, seed=7)  # same seed, same interval
    assert a != bootstrap_ci(VALS, n_resamples=2000, seed=8)
    ref = bootstrap((np.array(VALS),), np.mean, n_resamples=2000, confidence_level=0.95,
                    method="percentile", rng=np.random.default_rng(7)).confidence_interval
    assert (a["low"], a["high"]) == pytest.approx((ref.low, ref.high))
    assert a["low"] < np.mean(VALS) < a["high"]
    assert a["n_resamples"] == 2000 and a["seed"] == 7 and a["method"] == "percentile" and a["n"] == 10


def test_bootstrap_edges():
    assert bootstrap_ci([0.5, 0.5, 0.5], n_resamples=100)["low"] == 0.5  # zero width
    one = bootstrap_ci([0.5, None], n_resamples=100)
    assert one["low"] is None and one["high"] is None and one["n"] == 1
    with pytest.raises(BenchError, match="n_resamples"):
        bootstrap_ci(VALS, n_resamples=0)
    with pytest.raises(BenchError, match="numbers"):
        bootstrap_ci([{"task": "Task1", "score": 1.0}] * 3)


def test_bootstrap_of_a_metric_aggregate_node():
    r = [0.5, 2.0, 1.0, 4.0, 0.25, 1.5, 0.8]  # per-item truth ratios
    run = Results({"forget": SetResult("forget", [str(i) for i in range(7)], {}, {"truth_ratio": r})})
    node = Derived("bootstrap_ci", {"values": Ref("forget/truth_ratio")},
                   options={"name": "forget_truth_ratio", "metric": "truth_ratio",
                            "metric_options": {"mode": "forget"}, "n_resamples": 500, "seed": 1})
    values, _ = compute([node], {"self": run})
    agg = aggregate_forget(r)
    assert values["forget_truth_ratio_ci_low"] <= agg <= values["forget_truth_ratio_ci_high"]
    assert values["forget_truth_ratio_ci_high"] <= 1.0  # min(r, 1/r) <= 1: the aggregate, not the raw mean
    assert values["forget_truth_ratio_ci_resamples"] == 500.0
    mean_node = Derived("bootstrap_ci", {"values": Ref("forget/truth_ratio")},
                        options={"name": "raw", "n_resamples": 500, "seed": 1})
    raw, _ = compute([mean_node], {"self": run})
    assert raw["raw_ci_high"] > 1.0  # the raw mean of r is another statistic
