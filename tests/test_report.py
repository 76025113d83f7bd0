"""Report table and scatter from hand-made results files."""

from __future__ import annotations

import json

import pytest

from bench.errors import BenchError
from bench.report import efficacy, efficacy_axis, rows_for, write_report


def _results(d, task="t", method="m", aggregates=None, refs=None, options=None):
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps({
        "task": task, "method": method, "model": "tiny", "aggregates": aggregates or {},
        "references": refs or {}, "config": {"method_options": options or {}},
    }))
    return d


def test_rows_axis_and_files(tmp_path):
    retain = _results(tmp_path / "retain", method="none", aggregates={"model_utility": 0.5, "forget_rouge_l": 0.4})
    target = _results(tmp_path / "target", method="none",
                      aggregates={"model_utility": 0.7, "log10_forget_quality": -3.0, "forget_rouge_l": 0.9})
    refs = {"retain": str(retain), "target": str(target)}
    a = _results(tmp_path / "a", aggregates={"model_utility": 0.6, "log10_forget_quality": -1.0}, refs=refs,
                 options={"lr": 1e-5})
    b = _results(tmp_path / "b", aggregates={"model_utility": 0.4, "log10_forget_quality": -0.5}, refs=refs,
                 options={"lr": 1e-4})
    rows = rows_for([a, b])
    assert [r["kind"] for r in rows] == ["run", "retain", "target", "run"]  # references once each
    assert rows[0]["run"].endswith("(lr=1e-05)") and rows[3]["run"].endswith("(lr=0.0001)")
    key, label = efficacy_axis(rows)
    assert key == "log10_forget_quality" and "log10" in label
    # the retain-only model's FQ against itself is 1: log10 = 0, never 1 - ROUGE mixed in
    assert [efficacy(r, key) for r in rows] == [-1.0, 0.0, -3.0, -0.5]
    text, md, png = write_report([a, b], tmp_path / "rep")
    assert "reference: retain-only model" in text and md.read_text().startswith("# Unlearning report")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rouge_axis_without_forget_quality(tmp_path):
    a = _results(tmp_path / "a", aggregates={"model_utility": 0.6, "forget_rouge_l": 0.25})
    rows = rows_for([a])
    key, _ = efficacy_axis(rows)
    assert key == "forget_rouge_l" and efficacy(rows[0], key) == 0.75


def test_not_a_run_dir(tmp_path):
    with pytest.raises(BenchError, match="no results.json"):
        rows_for([tmp_path])


def test_report_uses_the_tasks_headline_and_frontier(tmp_path):
    from bench.report import columns, efficacy_axis, rows_for, table, utility_key

    d = tmp_path / "m"
    d.mkdir()
    res = {"task": "muse-news", "method": "ga", "model": "tiny", "references": {},
           "aggregates": {"verbmem_f": 0.2, "knowmem_retain_f": 0.5, "privleak": -12.0},
           "headline": ["verbmem_f", "knowmem_retain_f", "privleak"],
           "frontier": {"efficacy": "verbmem_f", "utility": "knowmem_retain_f",
                        "efficacy_higher_is_better": False}}
    (d / "results.json").write_text(json.dumps(res))
    assert [k for k, _ in columns([res])] == ["verbmem_f", "knowmem_retain_f", "privleak"]
    rows = rows_for([d])
    text = table(rows)
    assert "privleak" in text and "-12.0000" in text and "forget ROUGE-L" not in text
    assert efficacy_axis(rows)[0] == "verbmem_f" and "lower is better" in efficacy_axis(rows)[1]
    assert utility_key(rows) == "knowmem_retain_f"
    assert columns([{"task": "old"}]) == columns([])  # results without a headline: TOFU's columns
