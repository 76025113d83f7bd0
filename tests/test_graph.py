"""The metric graph: derived nodes over sets, reference roles, earlier nodes."""

from __future__ import annotations

import math

import pytest

from bench.errors import BenchError
from bench.graph import Derived, Ref, Results, aggregates, compute
from bench.metrics.derived import derived
from bench.task import SetResult


def _set(name, per_item, agg=None, ids=None):
    n = len(next(iter(per_item.values()))) if per_item else 0
    return SetResult(name, ids or [f"{name}/{i}" for i in range(n)], agg or {}, per_item)


@derived("_test_auc", "test: share of (member, non-member) pairs ordered member > non-member")
def _auc(members, nonmembers):
    pairs = [(m, n) for m in members for n in nonmembers]
    return sum(1.0 if m > n else 0.5 if m == n else 0.0 for m, n in pairs) / len(pairs)


@derived("_test_gap", "test: this run's value minus a reference's", outputs=("gap", "ratio"))
def _gap(mine, theirs, scale: float = 1.0):
    return {"gap": scale * (mine - theirs), "ratio": mine / theirs}


def test_two_set_node():
    """MIA-style AUC: members from one set, non-members from another (asymmetric inputs:
    swapping the sets gives 1 - AUC, so the direction is pinned)."""
    runs = {"self": Results({"forget": _set("forget", {"loss": [3.0, 2.0, 1.0]}),
                             "holdout": _set("holdout", {"loss": [0.5, 1.5]})})}
    node = Derived("_test_auc", {"members": Ref("forget/loss"), "nonmembers": Ref("holdout/loss")},
                   key="mia_auc")
    values, notes = compute([node], runs)
    assert values == {"mia_auc": pytest.approx(5 / 6)} and notes == {}
    swapped = Derived("_test_auc", {"members": Ref("holdout/loss"), "nonmembers": Ref("forget/loss")}, key="x")
    assert compute([swapped], runs)[0]["x"] == pytest.approx(1 / 6)


def test_reference_role_node_and_options():
    runs = {"self": Results({"forget": _set("forget", {"p": [0.2]}, {"p": 0.2})}),
            "target": Results({"forget": _set("forget", {"p": [0.8]}, {"p": 0.8})})}
    node = Derived("_test_gap", {"mine": Ref("forget/p", per_item=False),
                                 "theirs": Ref("forget/p", role="target", per_item=False)},
                   options={"scale": 10.0})
    values, _ = compute([node], runs)
    assert values["gap"] == pytest.approx(-6.0) and values["ratio"] == pytest.approx(0.25)


def test_missing_role_is_recorded_not_guessed():
    runs = {"self": Results({"forget": _set("forget", {"p": [0.2]}, {"p": 0.2})})}
    node = Derived("_test_gap", {"mine": Ref("forget/p", per_item=False),
                                 "theirs": Ref("forget/p", role="retain", per_item=False)})
    values, notes = compute([node], runs)
    assert values == {"_test_gap": None, "gap": None, "ratio": None}
    assert "retain-only reference" in notes["_test_gap"]


@derived("_test_mean", "test: mean of labelled values, None when one is missing")
def _mean(values):
    return None if any(v is None for v in values.values()) else sum(values.values()) / len(values)


def test_a_none_result_from_none_inputs_says_which():
    runs = {"self": Results({"s": _set("s", {"a": [1.0]}, {"a": 1.0, "b": None, "c": 3.0})})}
    node = Derived("_test_mean", {"values": {lab: Ref(f"s/{lab}", per_item=False) for lab in "abc"}})
    after = Derived("_test_mean", {"values": {"m": Ref("@_test_mean")}}, key="after")
    values, notes = compute([node, after], runs)
    assert values["_test_mean"] is None and notes["_test_mean"] == "_test_mean: input b is missing (None)"
    assert values["after"] is None and "input '@_test_mean' is missing (_test_mean: input b" in notes["after"]
    runs["self"].sets["s"].aggregates["b"] = 2.0
    assert compute([node], runs) == ({"_test_mean": 2.0}, {})
    hinted = Derived("_test_gap", {"mine": Ref("s/a", per_item=False), "theirs": Ref("t/a", per_item=False)},
                     missing_hint="evaluate set t (a task option)")
    _, notes = compute([hinted], runs)
    assert notes["_test_gap"] == "_test_gap: self run has no eval set 't'; evaluate set t (a task option)"
    assert "missing_hint" not in str(hinted.describe())  # not part of what is measured


def test_node_reads_an_earlier_node_and_a_mapping_input():
    runs = {"self": Results({"a": _set("a", {"m": [1.0]}, {"m": 1.0, "n": 3.0})})}
    nodes = [
        Derived("model_utility", {"values": {"m": Ref("a/m", per_item=False), "n": Ref("a/n", per_item=False)}},
                key="mu"),
        Derived("_test_gap", {"mine": Ref("@mu"), "theirs": Ref("a/m", per_item=False)}),
    ]
    values, _ = compute(nodes, runs)
    assert values["mu"] == pytest.approx(1.5)  # harmonic mean of 1 and 3
    assert values["gap"] == pytest.approx(0.5)


def test_other_role_with_other_items_is_an_error():
    runs = {"self": Results({"forget": _set("forget", {"tr": [0.1, 0.2]})}),
            "retain": Results({"forget": _set("forget", {"tr": [0.1, 0.2]}, ids=["x", "y"])})}
    node = Derived("forget_quality", {"r_unlearned": Ref("forget/truth_ratio".replace("truth_ratio", "tr")),
                                      "r_reference": Ref("forget/tr", role="retain")})
    with pytest.raises(BenchError, match="holds other items"):
        compute([node], runs)


def test_aggregates_flatten_set_values_after_nodes():
    runs = {"self": Results({"forget": _set("forget", {"p": [0.5]}, {"p": 0.5})})}
    out, _ = aggregates([], runs)
    assert out == {"forget_p": 0.5}


def test_refs_are_checked():
    with pytest.raises(ValueError, match="unknown role"):
        Ref("a/b", role="teacher")
    with pytest.raises(ValueError, match="expected 'set/metric'"):
        Ref("no-slash")
    assert Ref("@mu").is_node and not Ref("a/b").is_node


def test_a_non_derived_metric_cannot_be_a_node():
    with pytest.raises(BenchError, match="not a derived metric"):
        compute([Derived("rouge_l", {})], {"self": Results({})})


def test_forget_quality_node_matches_the_function():
    from bench.metrics.derived import forget_quality

    mine, theirs = [0.1, 0.2, 0.3], [0.7, 0.8, 0.9]
    runs = {"self": Results({"forget": _set("forget", {"tr": mine})}),
            "retain": Results({"forget": _set("forget", {"tr": theirs})})}
    node = Derived("forget_quality", {"r_unlearned": Ref("forget/tr"), "r_reference": Ref("forget/tr", role="retain")})
    values, _ = compute([node], runs)
    assert values == forget_quality(mine, theirs)
    assert math.isclose(values["forget_quality"], 0.1)
