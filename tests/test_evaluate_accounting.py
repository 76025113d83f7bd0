"""The engine's accounting: one model pass per distinct request, shared by every metric
that asks for it, with answering seconds per phase and scoring seconds per metric family."""

from __future__ import annotations

import json

from bench.backends.cache import SCORE_PHASE, AnsweringLayer
from bench.evaluate import answer, metric_family, plan, score
from bench.items import EvalSet, Item, MetricSpec
from bench.registry import BACKENDS

ITEMS = [Item("a", "Who wrote the book?", "The book was written by Basil Mahfouz."),
         Item("b", "Where was the author born?", "The author was born in Kuwait City."),
         Item("c", "What is the capital of France?", "Paris is the capital of France.")]
HOLDOUT = [Item("h1", "Who is the author?", "Basil is the author."),
           Item("h2", "Where is Kuwait?", "Kuwait is in Asia.")]

FORGET_METRICS = ["rouge_l", "token_entropy", "probability", "mia_loss", "mia_zlib", "mia_min_k",
                  "mia_min_k_plus_plus"]


def _sets() -> list[EvalSet]:
    return [EvalSet("forget", list(ITEMS), [MetricSpec(m) for m in FORGET_METRICS], role="forget",
                    max_new_tokens=6),
            EvalSet("holdout", list(HOLDOUT), [MetricSpec("mia_loss"), MetricSpec("mia_min_k_plus_plus")],
                    max_new_tokens=6)]


def test_shared_requests_are_one_pass_and_every_family_is_timed(tiny_bundle):
    p = plan(tiny_bundle, _sets())
    layer = AnsweringLayer(BACKENDS.get("hf")(tiny_bundle), tiny_bundle.fingerprint(), None)
    try:
        responses = answer(p, layer)
    finally:
        layer.close()
    n, h = len(ITEMS), len(HOLDOUT)

    # the answering layer: ROUGE-L and TE ask the same Generate; probability, loss, zlib,
    # min-k the same LogLikelihood; min-k++ a TokenStats of that same pair
    stats = layer.stats()
    assert stats["generate"] == {"requests": 2 * n, "duplicates": n, "hits": 0, "misses": n, "computed": n}
    assert stats["loglikelihood"]["requests"] == 4 * n + h and stats["loglikelihood"]["computed"] == n + h
    assert stats["token_stats"]["requests"] == n + h and stats["token_stats"]["computed"] == n + h

    # the backend: the likelihood kinds of one (prompt, continuation) are one forward item
    phases = layer.phases()
    assert set(phases) == {SCORE_PHASE, "generate"}
    assert phases[SCORE_PHASE]["computed"] == 2 * (n + h) and phases[SCORE_PHASE]["distinct_pairs"] == n + h
    assert phases["generate"]["computed"] == n
    assert all(ph["seconds"] > 0 for ph in phases.values())

    # per metric: who started each pass, who reused one (plan order)
    share = p.sharing()
    assert share["forget/rouge_l"] == {"requests": n, "new": n, "shared_with": {}, "repeated": 0}
    assert share["forget/token_entropy"] == {"requests": n, "new": 0, "shared_with": {"forget/rouge_l": n},
                                             "repeated": 0}
    assert share["forget/probability"]["new"] == n
    for m in ("mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus"):
        assert share[f"forget/{m}"] == {"requests": n, "new": 0, "shared_with": {"forget/probability": n},
                                        "repeated": 0}, m
    # other items are new passes: the counts tell a shared request from a fresh one
    assert share["holdout/mia_loss"]["new"] == h and share["holdout/mia_min_k_plus_plus"]["new"] == 0
    assert sum(r["new"] for r in share.values()) == n + (n + h)  # generations + likelihood pairs

    timings: dict = {}
    results, _ = score(p, responses, timings=timings)
    assert set(timings["score_by_metric_s"]) == ({f"forget/{m}" for m in FORGET_METRICS}
                                                 | {"holdout/mia_loss", "holdout/mia_min_k_plus_plus"})
    assert set(timings["score_by_family_s"]) == {"rouge", "closer_look", "probability", "mia"}
    assert abs(sum(timings["score_by_family_s"].values()) - sum(timings["score_by_metric_s"].values())) < 1e-2
    assert timings["scorers"] == {}  # no model-based scorer among these metrics
    assert results["forget"].aggregates["token_entropy"] is not None


def test_metric_family_is_the_module():
    from bench.metrics.closer_look import CosineSimilarity, TokenEntropy
    from bench.metrics.mia import MIAMinK

    assert metric_family(TokenEntropy()) == "closer_look" == metric_family(CosineSimilarity())
    assert metric_family(MIAMinK()) == "mia"


def test_scorer_usage_is_counted(monkeypatch):
    """The embedding scorer's calls, texts, distinct texts and seconds reach ``timings``."""
    import numpy as np

    from bench import scorers

    class FakeST:
        def encode(self, texts, **kw):
            return np.ones((len(texts), 3), dtype=np.float32)

    emb = scorers.Embedder.__new__(scorers.Embedder)
    emb.model, emb.model_name, emb.batch_size, emb.device = FakeST(), "fake-st", 4, "cpu"
    before = scorers.snapshot()
    emb.cosine(["x", "y", "x"], ["z", "x", "z"])
    used = scorers.usage_since(before)
    assert used["embedding:fake-st"]["calls"] == 1
    assert used["embedding:fake-st"]["texts"] == 6 and used["embedding:fake-st"]["distinct"] == 3
    assert scorers.usage_since(scorers.snapshot()) == {}


def test_run_records_timings_and_sharing(tmp_path, tiny_dir):
    """results.json of a real run: answering seconds per phase, scoring seconds per family
    and metric, derived-node seconds, and the per-metric request sharing."""
    from bench.run import RunSpec, run

    spec = RunSpec(task="synthetic-forget01", method="none", model=str(tiny_dir), as_is=True, limit=2,
                   out=str(tmp_path / "runs"), cache=False)
    res = json.loads((run(spec, log=lambda s: None) / "results.json").read_text())
    t = res["timings"]
    assert set(t["answer_by_phase_s"]) == {SCORE_PHASE, "generate"}
    assert {"rouge", "probability", "truth_ratio"} <= set(t["score_by_family_s"])
    assert "forget/rouge_l" in t["score_by_metric_s"] and t["derived_s"] >= 0
    assert res["answer_phases"]["generate"]["computed"] == res["request_stats"]["generate"]["computed"]
    share = res["request_sharing"]
    assert all(r["repeated"] == 0 for r in share.values())
    # no pass is started twice: the passes started add up to what the backend computed
    started = sum(r["new"] for r in share.values())
    computed = res["answer_phases"]["generate"]["computed"] + res["answer_phases"][SCORE_PHASE]["distinct_pairs"]
    assert started == computed
    assert res["steps"][0]["timings"]["score_by_family_s"] == t["score_by_family_s"]
