"""`bench list metrics`: every metric with its kind, direction and what it applies to."""

from __future__ import annotations

from bench.registry import METRICS


def test_list_metrics_shows_direction_and_scope(capsys):
    from bench.cli import main

    assert main(["list", "metrics"]) == 0
    out = capsys.readouterr().out.splitlines()
    names = [e.name for e in METRICS.entries()]
    for name in ["token_entropy", "cosine_similarity", "entailment", "gibberish", "mia_loss", "mia_zlib",
                 "mia_min_k", "mia_min_k_plus_plus", "mia_auc", "privleak", "semeval_mia_score", "verbmem",
                 "knowmem", "semeval_regurgitation", "semeval_knowledge", "semeval_task_aggregate",
                 "semeval_final", "rwku_rouge_l", "rwku_fluency", "choice_accuracy", "bootstrap_ci",
                 "closer_look_mu", "closer_look_fe", "rouge_l", "truth_ratio", "forget_quality"]:
        assert name in names, name
    for name in names:
        if name.startswith("_"):  # plugins other test modules register for themselves
            continue
        i = next(k for k, line in enumerate(out) if line.startswith(name + " "))
        detail = out[i + 1]
        assert detail.startswith(" " * 25) and "applies to: " in detail, name
        assert any(d in detail for d in ("higher=better", "lower=better", "by option/goal")), name
        assert detail.split("applies to: ")[1].strip() not in ("", "any set"), name
    line = out[next(k for k, s in enumerate(out) if s.startswith("mia_auc "))]
    assert "members positive" in line  # the AUC convention is in the listing
