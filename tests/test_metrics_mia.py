"""Golden values of the MIA item scores and their set-level nodes (AUC, PrivLeak, SemEval)."""

from __future__ import annotations

import math
import zlib

import pytest

from bench.errors import BenchError
from bench.graph import Derived, Ref, Results, compute
from bench.items import Item
from bench.metrics.base import EvalContext
from bench.metrics.mia import (
    MUSE_AUC_RETRAINED,
    MIALoss,
    MIAMinK,
    MIAMinKPlusPlus,
    MIAZlib,
    lowest_mean,
)
from bench.metrics.probability import Probability
from bench.prompts import PromptConfig
from bench.requests import LogLikelihood, LogLikelihoodResponse, TokenStats, TokenStatsResponse
from bench.task import SetResult

PC = PromptConfig(style="plain", bos="<s>", eos="</s>")
QA = EvalContext(PC, format="model")
DOC = EvalContext(PC, format="document")
ITEM = Item("forget/0", "Where was the author born?", "abc")


def ll(*lp: float) -> LogLikelihoodResponse:
    return LogLikelihoodResponse(tuple(lp), (True,) * len(lp))


def ts(lp, mu, var) -> TokenStatsResponse:
    return TokenStatsResponse(tuple(lp), (True,) * len(lp), tuple(mu), tuple(var), (0.0,) * len(lp))


def test_requests_are_shared_with_probability():
    (req,) = MIALoss().requests(ITEM, QA)
    assert req == Probability().requests(ITEM, QA)[0]  # one pass serves both
    assert MIAZlib().requests(ITEM, QA) == [req] and MIAMinK().requests(ITEM, QA) == [req]
    (st,) = MIAMinKPlusPlus().requests(ITEM, QA)
    assert isinstance(st, TokenStats) and (st.prompt, st.continuation) == (req.prompt, req.continuation)
    (doc,) = MIALoss().requests(Item("d/0", "", "A whole news article."), DOC)
    assert isinstance(doc, LogLikelihood) and doc.continuation == "A whole news article."


def test_loss_and_zlib_golden():
    r = ll(-1.0, -2.0, -3.0)
    assert MIALoss().score(ITEM, [r], QA) == pytest.approx(-2.0)  # -mean NLL, every token (EOS kept)
    z = len(zlib.compress(b"abc"))
    assert z == 11
    assert MIAZlib().score(ITEM, [r], QA) == pytest.approx(-2.0 / 11)  # mean NLL, not the sum
    assert MIALoss().score(ITEM, [ll()], QA) is None


def test_min_k_golden_and_conventions():
    r = ll(-1.0, -5.0, -3.0, -2.0, -4.0)
    # document: all 5 tokens, k=0.4 -> 2 lowest (-5, -4) -> -4.5
    assert MIAMinK(k=0.4).score(ITEM, [r], DOC) == pytest.approx(-4.5)
    # QA (model format): open-unlearning drops the final (EOS) token: (-1,-5,-3,-2), int(1.6)=1 -> -5
    assert MIAMinK(k=0.4).score(ITEM, [r], QA) == pytest.approx(-5.0)
    assert MIAMinK(k=0.4, drop_last=False).score(ITEM, [r], QA) == pytest.approx(-4.5)
    assert MIAMinK(k=0.4, drop_last=True).score(ITEM, [r], DOC) == pytest.approx(-5.0)
    assert MIAMinK(k=1.0).score(ITEM, [r], DOC) == pytest.approx(-3.0)  # k = 100%: the mean


def test_min_k_small_n():
    r = ll(-1.0, -3.0)  # k*n = 0.8 < 1
    assert MIAMinK(k=0.4).score(ITEM, [r], DOC) == pytest.approx(-3.0)  # open-unlearning keeps 1
    assert MIAMinK(k=0.4, min_one=False).score(ITEM, [r], DOC) is None  # MUSE/RWKU: no token
    one = ll(-0.7)  # one token: on a QA set it is the EOS, dropped -> nothing left
    assert MIAMinK().score(ITEM, [one], QA) is None
    assert MIAMinK().score(ITEM, [one], DOC) == pytest.approx(-0.7)
    assert lowest_mean([], 0.5) is None
    assert lowest_mean([2.0, 2.0, 1.0, 1.0], 0.5) == pytest.approx(1.0)  # ties


def test_min_k_plus_plus_golden():
    lp = (-1.0, -3.0, -0.5)
    mu = (-1.5, -1.0, -0.5)
    var = (0.25, 4.0, 0.0)
    # z = (lp - mu) / sqrt(max(var, 1e-6)) = (1.0, -1.0, 0.0); k=0.4 of 3 -> int(1.2) = 1 -> -1
    r = ts(lp, mu, var)
    assert MIAMinKPlusPlus(k=0.4).score(ITEM, [r], DOC) == pytest.approx(-1.0)
    assert MIAMinKPlusPlus(k=1.0).score(ITEM, [r], DOC) == pytest.approx(0.0)
    # k = 0.7 -> int(2.1) = 2 -> mean(-1, 0) = -0.5
    assert MIAMinKPlusPlus(k=0.7).score(ITEM, [r], DOC) == pytest.approx(-0.5)
    # the clamp matters: var 0 with lp != mu -> (lp - mu)/sqrt(1e-6) = 1000 * diff
    r2 = ts((-1.0, -2.0), (-1.5, -1.0), (0.0, 1.0))
    assert MIAMinKPlusPlus(k=1.0).score(ITEM, [r2], DOC) == pytest.approx((500.0 - 1.0) / 2)
    assert MIAMinKPlusPlus(k=1.0, clamp=None).score(ITEM, [r2], DOC) is None  # RWKU: undefined
    # QA set: the final token (EOS) is dropped from lp, mu and var alike -> z = (1, -1) -> k=0.5 -> -1
    assert MIAMinKPlusPlus(k=0.5).score(ITEM, [r], QA) == pytest.approx(-1.0)
    with pytest.raises(BenchError, match="token stats"):
        MIAMinKPlusPlus().score(ITEM, [ts(lp, mu[:2], var)], DOC)


def test_options_are_checked():
    for bad in (0, 1.5, -0.1, True, "0.4"):
        with pytest.raises(BenchError, match="option k"):
            MIAMinK(k=bad)
    with pytest.raises(BenchError, match="min_one"):
        MIAMinK(min_one="yes")


def _run(sets: dict[str, dict[str, list]], derived_values=None) -> Results:
    out = {}
    for name, per_item in sets.items():
        n = len(next(iter(per_item.values())))
        out[name] = SetResult(name, [f"{name}/{i}" for i in range(n)], {}, dict(per_item))
    return Results(out, derived_values or {})


def test_auc_privleak_semeval_nodes():
    me = _run({"forget": {"mia_min_k": [-0.1, -0.2, -0.3]}, "holdout": {"mia_min_k": [-0.5, -0.15, -0.9]}})
    ref = _run({"forget": {"mia_min_k": [-0.5, -0.4, -0.3]}, "holdout": {"mia_min_k": [-0.2, -0.45, -0.35]}})
    nodes = [
        Derived("mia_auc", {"members": Ref("forget/mia_min_k"), "nonmembers": Ref("holdout/mia_min_k")},
                key="mia_min_k_auc"),
        Derived("privleak", {"auc": Ref("@mia_min_k_auc"), "reference_auc": Ref("@mia_min_k_auc", role="retain")},
                key="privleak"),
        Derived("privleak", {"auc": Ref("@mia_min_k_auc")},
                options={"reference_auc": 1 - MUSE_AUC_RETRAINED["news"],
                         "reference_source": "MUSE published AUC'_retrained (news)"}, key="privleak_muse"),
        Derived("semeval_mia_score", {"auc": Ref("@mia_min_k_auc")}, key="semeval_mia"),
    ]
    # retain run's own AUC first
    ref_vals, _ = compute(nodes[:1], {"self": ref})
    values, notes = compute(nodes, {"self": me, "retain": Results(ref.sets, ref_vals)})
    # members (-0.1,-0.2,-0.3) vs (-0.5,-0.15,-0.9): member-higher pairs 3 + 2 + 2 = 7 of 9
    assert values["mia_min_k_auc"] == pytest.approx(7 / 9)
    # reference: (-0.5,-0.4,-0.3) vs (-0.2,-0.45,-0.35): 0 + 1 + 2 = 3 of 9
    assert ref_vals["mia_min_k_auc"] == pytest.approx(3 / 9)
    # AUC' = 2/9 vs 6/9: (2/9 - 6/9) / (6/9) * 100 = -66.67
    assert values["privleak"] == pytest.approx(-200 / 3)
    assert values["privleak_muse"] == pytest.approx(((2 / 9) - 0.4772) / 0.4772 * 100)
    assert values["semeval_mia"] == pytest.approx(1 - 2 * abs(7 / 9 - 0.5))
    assert not notes
    # without the retain run the TOFU privleak is missing with a reason, never guessed
    values2, notes2 = compute(nodes, {"self": me})
    assert values2["privleak"] is None and "retain" in notes2["privleak"]
    assert values2["privleak_muse"] == pytest.approx(values["privleak_muse"])


def test_privleak_needs_a_reference():
    from bench.metrics.mia import privleak

    with pytest.raises(BenchError, match="reference AUC"):
        privleak(0.7)
    assert privleak(0.7, 0.5) == pytest.approx((0.3 - 0.5) / 0.5 * 100)
    assert math.isfinite(privleak(0.7, 0.5))


def test_benchmark_specs_and_auc_nodes():
    from bench.metrics.mia import MUSE_NEWS_REFERENCE, auc_nodes, benchmark_specs

    muse = benchmark_specs("muse")
    assert [(s.name, dict(s.options)) for s in muse] == [("mia_min_k", {"k": 0.4, "min_one": False})]
    rwku = {s.name: dict(s.options) for s in benchmark_specs("rwku")}
    assert rwku["mia_min_k_plus_plus"] == {"k": 0.2, "min_one": False, "clamp": None}
    with pytest.raises(BenchError, match="unknown benchmark"):
        benchmark_specs("wmdp")
    me = _run({"forget": {"mia_min_k": [-0.1, -0.2]}, "holdout": {"mia_min_k": [-0.3, -0.4]}})
    nodes = auc_nodes("forget", "holdout", ["mia_min_k"], privleak_attack="mia_min_k", semeval=True,
                      **MUSE_NEWS_REFERENCE)
    values, notes = compute(nodes, {"self": me})
    assert values["mia_min_k_auc"] == 1.0 and values["privleak"] == pytest.approx(-100.0)
    assert values["semeval_mia_score"] == pytest.approx(0.0)
    assert nodes[1].options["reference_source"].startswith("MUSE published")
    assert "members positive" in nodes[0].describe()["options"]["convention"]  # recorded with the node
    from bench.metrics.mia import mia_auc

    with pytest.raises(BenchError, match="convention"):
        mia_auc([1.0], [0.0], convention="forget labelled 0")
    with pytest.raises(BenchError, match="reference_role or reference_auc"):
        auc_nodes("forget", "holdout", ["mia_min_k"], privleak_attack="mia_min_k")
