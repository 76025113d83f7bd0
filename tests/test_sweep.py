"""Sweeps: parsing, grid expansion, hashes equal to `bench run`'s, the skip rule (no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import sweep as sw
from bench.cli import main
from bench.errors import BenchError


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))


def test_toml_and_yaml_expand_the_same(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text(
        'tasks = ["synthetic-forget01", "synthetic-forget05"]\n'
        'methods = ["ga", "npo-gd"]\nseeds = [0, 1]\nmodel = "tiny"\nlimit = 3\n'
        "[grid]\nepochs = [1, 2]\n"
        '[grid.npo-gd]\nbeta = [0.1, 0.5]\nepochs = 3\n'
    )
    yaml = tmp_path / "s.yaml"
    yaml.write_text(
        "tasks: [synthetic-forget01, synthetic-forget05]\nmethods:\n  ga: {}\n  npo-gd: {beta: [0.1, 0.5], epochs: 3}\n"
        "seeds: [0, 1]\nmodel: tiny\nlimit: 3\ngrid:\n  epochs: [1, 2]\n"
    )
    a = sw.expand(sw.parse(sw.load_file(toml), str(toml), "s"))
    b = sw.expand(sw.parse(sw.load_file(yaml), str(yaml), "s"))
    # 2 tasks x (ga: 2 epochs + npo-gd: 2 betas, its own epochs=3 overriding the common grid) x 2 seeds
    assert len(a) == 2 * (2 + 2) * 2
    assert [t.label for t in a] == [t.label for t in b]
    assert a[0].label == "synthetic-forget01 ga tiny epochs=1 seed=0"
    assert a[1].label == "synthetic-forget01 ga tiny epochs=1 seed=1"
    assert a[4].label == "synthetic-forget01 npo-gd tiny beta=0.1 epochs=3 seed=0"
    assert a[0].spec.options == {"epochs": "1"} and a[0].spec.limit == 3
    assert a[4].spec.options == {"beta": "0.1", "epochs": "3"}
    assert Path(a[0].spec.out).is_absolute() and a[0].spec.out.endswith("sweeps/s/runs")
    # prepare groups: one per (task family, model, data): forget01 and forget05 share the
    # full model, so one job prepares both (seeds ascending), shared by every method
    assert len({t.group for t in a}) == 1 and all(t.group for t in a)
    [(_, specs)] = sw._prepare_groups(a).items()
    assert [(d["task"], d["seed"], d["method"], d["options"]) for d in specs] == [
        ("synthetic-forget01", 0, "none", {}), ("synthetic-forget05", 0, "none", {}),
        ("synthetic-forget01", 1, "none", {}), ("synthetic-forget05", 1, "none", {})]


def test_values_become_the_strings_bench_run_sees():
    s = sw.parse({"tasks": "synthetic-forget01", "methods": {"ga": {"lr": [1e-5], "max_length": 64}}})
    [t] = sw.expand(s)
    assert t.spec.options == {"lr": "1e-05", "max_length": "64"} and t.spec.seed == 0
    assert sw.option_string(True) == "true" and sw.option_string(None) == "none"


def test_duplicates_run_once_and_common_keys_only_where_accepted():
    # "none" takes no options: the common grid does not apply to it; ga given twice is one trial
    s = sw.parse({"tasks": ["synthetic-forget01"], "methods": ["none", "ga"], "seeds": [0, 0],
                  "grid": {"epochs": [1]}})
    trials = sw.expand(s)
    assert [t.label for t in trials] == ["synthetic-forget01 none tiny seed=0",
                                         "synthetic-forget01 ga tiny epochs=1 seed=0"]


@pytest.mark.parametrize("raw, needle", [
    ({"tasks": ["synthetic-forget01"], "methods": ["gd"], "seedz": [0]}, "unknown sweep key 'seedz'; did you mean 'seed', 'seeds'?"),
    ({"tasks": ["synthetic-forget01"]}, "'methods' is missing"),
    ({"tasks": ["tofu-foget01"], "methods": ["gd"]}, "did you mean 'tofu-forget01'"),
    ({"tasks": ["synthetic-forget01"], "methods": ["gd"], "grid": {"lrr": [1]}}, "grid option 'lrr' is taken by none"),
    ({"tasks": ["synthetic-forget01"], "methods": ["gd"], "grid": {"lr": ["fast"]}}, "option lr='fast'"),
    ({"tasks": ["synthetic-forget01"], "methods": ["gd"], "grid": {"ga": {"lr": [1]}}}, "grid.ga names a method"),
    ({"tasks": ["synthetic-forget01"], "methods": ["gd"], "seeds": ["x"]}, "seed 'x' is not an integer"),
    ({"tasks": ["synthetic-forget01"], "methods": ["gd"], "backend_options": {"slotz": 2}}, "did you mean 'slots'"),
    ({"tasks": ["synthetic-forget01"], "methods": ["gd"], "grid": {"lr": []}}, "grid.lr is empty"),
])
def test_bad_sweeps_are_one_line_errors(raw, needle):
    with pytest.raises(BenchError, match=None) as e:
        sw.expand(sw.parse(raw, "s.toml"))
    assert needle in str(e.value) and str(e.value).startswith("s.toml: ") and "\n" not in str(e.value)


def test_bad_file(tmp_path, capsys):
    p = tmp_path / "bad.toml"
    p.write_text("tasks = [\n")
    assert main(["sweep", str(p)]) == 2
    assert "bad.toml: not valid TOML" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_lists_and_dry_run(tmp_path, capsys):
    rc = main(["sweep", "--tasks", "synthetic-forget01", "--methods", "ga,gd", "--seeds", "0,1",
               "--grid", "epochs=1,2", "--grid", "gd.alpha=0.5", "--out", str(tmp_path / "s"), "--dry-run"])
    out = capsys.readouterr().out
    assert rc == 0 and "8 trials" in out
    assert "synthetic-forget01 gd tiny alpha=0.5 epochs=2 seed=1" in out


def test_trial_is_the_run_of_bench_run(tmp_path, tiny_dir, capsys):
    """The same run directory (hash) as the equivalent `bench run`; the sweep then skips it."""
    out = tmp_path / "s"
    assert main(["run", "--task", "synthetic-forget01", "--method", "ga", "--model", str(tiny_dir), "--as-is",
                 "--limit", "2", "--set", "epochs=1", "--set", "lr=1e-05", "--out", str(out / "runs")]) == 0
    [run_dir] = [d for d in (out / "runs").iterdir() if d.is_dir()]
    capsys.readouterr()
    doc = sw.execute(sw.parse({"tasks": ["synthetic-forget01"], "methods": ["ga"], "model": str(tiny_dir),
                               "as_is": True, "limit": 2, "grid": {"epochs": [1], "lr": [1e-5]},
                               "out": str(out)}), use_ray=False, report=False, log=lambda s: None)
    assert [(t["status"], t["run_dir"]) for t in doc["trials"]] == [("skipped", str(run_dir))]


def test_skip_rule_and_resume_sequential(tmp_path, tiny_dir, monkeypatch):
    """Without Ray: trials one after another (and said so); a rerun skips every finished
    trial; a trial whose results.json is missing (killed) is redone, a stale temporary
    file beside it is never read as a result."""
    monkeypatch.setattr(sw, "ray_available", lambda: False)
    out = tmp_path / "s"
    raw = {"tasks": ["synthetic-forget01"], "methods": ["ga", "gd"], "seeds": [0, 1], "model": str(tiny_dir),
           "as_is": True, "limit": 2, "grid": {"epochs": [1]}, "out": str(out)}
    lines: list[str] = []
    doc = sw.execute(sw.parse(raw), log=lines.append)
    assert "ray is not installed" in lines[0] and "one after another" in lines[0]
    assert doc["executor"] == "sequential" and doc["counts"] == {"computed": 4, "skipped": 0, "failed": 0}
    progress = [ln for ln in lines if ln.startswith("[")]
    assert len(progress) == 4 and progress[0].startswith("[1/4] computed synthetic-forget01 ga")
    first = {t["label"]: json.loads(Path(t["run_dir"], "results.json").read_text()) for t in doc["trials"]}
    assert (out / "report" / "report.html").exists() and (out / "sweep.json").exists()

    # kill simulation: one trial lost its results.json and left a half-written temporary file
    victim = Path(doc["trials"][2]["run_dir"])
    (victim / "results.json").unlink()
    (victim / ".results.json.abc123.tmp").write_text('{"aggregates": {"model_utility": 99')
    lines.clear()
    doc2 = sw.execute(sw.parse(raw), log=lines.append)
    assert doc2["counts"] == {"computed": 1, "skipped": 3, "failed": 0}
    assert [t["status"] for t in doc2["trials"]] == ["skipped", "skipped", "computed", "skipped"]
    again = json.loads((victim / "results.json").read_text())
    label = doc2["trials"][2]["label"]
    assert again["sets"] == first[label]["sets"] and again["aggregates"] == first[label]["aggregates"]
    assert any("1 computed, 3 skipped" in ln for ln in lines)


def test_failed_trial_is_reported_and_the_rest_run(tmp_path, tiny_dir, capsys):
    adapter = tmp_path / "boom.py"
    adapter.write_text("def unlearn(model, forget, retain, *, x: int = 0):\n    raise RuntimeError('boom')\n")
    rc = main(["sweep", "--tasks", "synthetic-forget01", "--methods", f"{adapter}:unlearn,none",
               "--models", str(tiny_dir), "--limit", "2", "--out", str(tmp_path / "s"), "--no-ray"])
    # --as-is is implied for a model path (it is the target); the failure is a summary line
    cap = capsys.readouterr()
    assert rc == 1 and "1 trial(s) failed" in cap.err
    assert "failed   synthetic-forget01" in cap.out and "RuntimeError: boom" in cap.out
    assert "1 computed, 0 skipped (finished before), 1 failed" in cap.out


def test_a_reference_model_is_evaluated_once_before_the_trials(tmp_path, tiny_dir):
    s = sw.parse({"tasks": ["synthetic-forget01"], "methods": ["ga", "gd"], "seeds": [1, 0],
                  "model": str(tiny_dir), "reference": str(tiny_dir)})
    trials = sw.expand(s)
    assert len({t.group for t in trials}) == 1 and trials[0].group.startswith('["reference"')
    [(_, specs)] = sw._prepare_groups(trials).items()
    assert [(d["seed"], d["method"]) for d in specs] == [(0, "none"), (1, "none")]
    # a reference given as a finished run directory needs no preparing
    run = tmp_path / "ref-run"
    run.mkdir()
    (run / "results.json").write_text("{}")
    s2 = sw.parse({"tasks": ["synthetic-forget01"], "methods": ["ga"], "model": str(tiny_dir), "reference": str(run)})
    assert [t.group for t in sw.expand(s2)] == [""]
