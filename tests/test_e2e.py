"""End to end: `bench run` on a tiny model, resuming, and the CLI's one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    rc = main(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def _only_run_dir(out: Path) -> Path:
    dirs = [d for d in out.iterdir() if d.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_run_as_is_writes_results_and_samples(tmp_path, tiny_dir, capsys):
    out = tmp_path / "runs"
    rc, stdout, err = _run(["run", "--task", "synthetic-forget01", "--method", "gd", "--model", str(tiny_dir),
                            "--as-is", "--limit", "3", "--set", "epochs=1", "--out", str(out)], capsys)
    assert rc == 0, err
    run_dir = _only_run_dir(out)
    res = json.loads((run_dir / "results.json").read_text())
    assert res["method"] == "gd" and res["config"]["method_options"]["epochs"] == 1
    for key in ("model_utility", "forget_rouge_l", "retain_rouge_l", "forget_truth_ratio"):
        assert key in res["aggregates"], key
    assert res["aggregates"]["forget_quality"] is None  # no reference given
    assert set(res["sets"]) == {"forget", "retain", "real_authors", "world_facts"}
    assert res["versions"]["torch"] and res["versions"]["transformers"]
    assert res["config"]["data"], "data hashes recorded"
    assert res["model_identity"]["fingerprint"]
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == sum(len(s["item_ids"]) for s in res["sets"].values())
    assert {"prompt", "reference", "generation", "metrics"} <= set(samples[0])
    assert "model utility" in stdout and "report:" in stdout
    assert (run_dir / "report" / "frontier.png").stat().st_size > 0
    assert not (run_dir / ".partial").exists() and not (run_dir / "model").exists()

    # a finished run is skipped
    rc, stdout, _ = _run(["run", "--task", "synthetic-forget01", "--method", "gd", "--model", str(tiny_dir),
                          "--as-is", "--limit", "3", "--set", "epochs=1", "--out", str(out)], capsys)
    assert rc == 0 and "skipped" in stdout


def test_save_model_keeps_the_unlearned_model(tmp_path, tiny_dir, capsys):
    from bench.models import load_bundle

    out = tmp_path / "runs"
    rc, _, err = _run(["run", "--task", "synthetic-forget01", "--method", "ga", "--model", str(tiny_dir), "--as-is",
                       "--limit", "2", "--set", "epochs=1", "--out", str(out), "--save-model"], capsys)
    assert rc == 0, err
    run_dir = _only_run_dir(out)
    assert not (run_dir / ".partial").exists()
    saved = load_bundle(run_dir / "model")
    res = json.loads((run_dir / "results.json").read_text())
    assert saved.fingerprint() == res["model_identity"]["fingerprint"]


def test_same_seed_same_numbers(tmp_path, tiny_dir, capsys):
    aggs = []
    for i in range(2):
        out = tmp_path / f"runs{i}"
        rc, _, err = _run(["run", "--task", "synthetic-forget01", "--method", "ga", "--model", str(tiny_dir),
                           "--as-is", "--limit", "2", "--set", "epochs=1", "--out", str(out), "--no-cache"], capsys)
        assert rc == 0, err
        aggs.append(json.loads((_only_run_dir(out) / "results.json").read_text())["sets"])
    assert aggs[0] == aggs[1]


def test_killed_run_resumes_without_recomputing(tmp_path, tiny_dir, monkeypatch):
    """Kill during evaluation; the rerun neither unlearns again nor recomputes finished answers."""
    from bench.backends.cache import AnsweringLayer
    from bench.run import RunSpec, run

    calls = tmp_path / "calls.txt"
    adapter = tmp_path / "my_method.py"
    adapter.write_text(
        "def unlearn(model, forget, retain, *, scale: float = 1.0):\n"
        f"    open({str(calls)!r}, 'a').write('x')\n"
        "    return model\n"
    )
    spec = RunSpec(task="synthetic-forget01", method=f"{adapter}:unlearn", model=str(tiny_dir), as_is=True,
                   limit=3, out=str(tmp_path / "runs"))

    real_answer = AnsweringLayer.answer

    class Killed(Exception):
        pass

    def dying_answer(self, requests):
        # answer (and cache) the first half, then die
        real_answer(self, requests[: len(requests) // 2])
        raise Killed

    monkeypatch.setattr(AnsweringLayer, "answer", dying_answer)
    with pytest.raises(Killed):
        run(spec, log=lambda s: None)
    run_dir = _only_run_dir(tmp_path / "runs")
    assert not (run_dir / "results.json").exists()
    assert (run_dir / ".partial" / "step-0" / "model").exists()
    assert calls.read_text() == "x"

    monkeypatch.setattr(AnsweringLayer, "answer", real_answer)
    run(spec, log=lambda s: None)
    assert calls.read_text() == "x", "the unlearning step ran again"
    stats = json.loads((run_dir / "results.json").read_text())["request_stats"]
    assert sum(k["hits"] for k in stats.values()) > 0, stats


@pytest.mark.parametrize(
    "args, needle",
    [
        (["run", "--task", "tofu-foget01", "--method", "gd"], "did you mean 'tofu-forget01'"),
        (["run", "--task", "synthetic-forget01", "--method", "npo-dg"], "did you mean 'npo-gd'"),
        (["run", "--task", "synthetic-forget01", "--method", "gd", "--model", "./no/such/model"], "does not exist"),
        (["run", "--task", "synthetic-forget01", "--method", "gd", "--set", "lrr=1"], "lrr"),
        (["run", "--task", "tofu-forget01", "--method", "gd", "--data-dir", "/nonexistent-dir"], "does not exist"),
        (["run", "--task", "synthetic-forget01", "--method", "nofile.py:fn"], "nofile.py"),
        (["run", "--task", "synthetic-forget01", "--method", "gd", "--backend-set", "slotz=3"],
         "backend 'hf' has no option 'slotz'; did you mean 'slots'?"),
        (["run", "--task", "synthetic-forget01", "--method", "gd", "--backend", "vlm"], "did you mean 'vllm'"),
    ],
)
def test_cli_errors_are_one_line(args, needle, capsys):
    rc, _, err = _run(args, capsys)
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert needle in err


def test_missing_data_file_names_file(tmp_path, capsys):
    d = tmp_path / "tofu"
    d.mkdir()
    (d / "full.json").write_text('[{"question": "q", "answer": "a"}]')
    rc, _, err = _run(["run", "--task", "tofu-forget01", "--method", "none", "--data-dir", str(d)], capsys)
    assert rc == 2 and "forget01" in err and err.count("\n") == 1, err


def test_missing_field_names_file_row_field(tmp_path, capsys):
    from bench.tasks.synthetic import write_tofu_layout

    d = write_tofu_layout(tmp_path / "tofu")
    rows = json.loads((d / "forget01_perturbed.json").read_text())
    del rows[1]["paraphrased_answer"]
    (d / "forget01_perturbed.json").write_text(json.dumps(rows))
    rc, _, err = _run(["run", "--task", "tofu-forget01", "--method", "none", "--data-dir", str(d)], capsys)
    assert rc == 2, err
    assert "forget01_perturbed.json" in err and "row 1" in err and "paraphrased_answer" in err, err


def test_list_verbs(capsys):
    for what, needle in [("tasks", "tofu-forget10"), ("methods", "npo-gd"), ("metrics", "truth_ratio"),
                         ("backends", "hf"), ("models", "smollm2-135m")]:
        rc, out, _ = _run(["list", what], capsys)
        assert rc == 0 and needle in out


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "bench run --task" in capsys.readouterr().out


def test_backend_auto_resolves_and_is_recorded(tmp_path, tiny_dir, capsys):
    out = tmp_path / "runs"
    rc, stdout, err = _run(["run", "--task", "synthetic-forget01", "--method", "none", "--model", str(tiny_dir),
                            "--as-is", "--limit", "2", "--backend", "auto", "--out", str(out)], capsys)
    assert rc == 0, err
    res = json.loads((_only_run_dir(out) / "results.json").read_text())
    assert res["config"]["backend"] in ("hf", "vllm") and "backend auto ->" in stdout


def test_reference_with_other_prompt_config_is_refused(tmp_path, tiny_dir, capsys):
    """Forget quality compares truth ratios: the reference must have seen the same prompts."""
    ref_out, out = tmp_path / "ref", tmp_path / "runs"
    common = ["--task", "synthetic-forget01", "--model", str(tiny_dir), "--as-is", "--limit", "2"]
    assert main(["run", "--method", "none", *common, "--out", str(ref_out)]) == 0
    ref_dir = _only_run_dir(ref_out)
    res = json.loads((ref_dir / "results.json").read_text())
    res["config"]["prompt"]["template"] = "Q: {question}\nA:"
    (ref_dir / "results.json").write_text(json.dumps(res))
    capsys.readouterr()
    rc, _, err = _run(["run", "--method", "none", *common, "--reference", str(ref_dir), "--out", str(out)], capsys)
    assert rc == 2 and "another prompt config" in err and "template" in err, err
