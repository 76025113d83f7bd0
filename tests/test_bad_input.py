"""Bad input, tried as a new user would: each is one line ``error: ...`` naming the culprit,
found before any model is built where that is possible (bench.checks)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.cli import main


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def layout(tmp_path) -> Path:
    """The synthetic task written in TOFU's file layout (a --data-dir for tofu-forget01)."""
    from bench.tasks.synthetic import write_tofu_layout

    return write_tofu_layout(tmp_path / "tofu")


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    rc = main(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def _one_line(rc: int, err: str, strict: bool = True) -> str:
    """The error line; ``strict``: stderr holds nothing else. Errors after a model was loaded
    may follow transformers' progress bars (``\r`` lines), but never a traceback."""
    assert rc == 2, err
    if strict:
        assert err.startswith("error: ") and err.count("\n") == 1, err
        return err
    assert "Traceback" not in err and err.count("error: ") == 1, err
    last = err.rstrip("\n").split("\n")[-1]
    assert last.startswith("error: "), err
    return last + "\n"


def _no_model_built(monkeypatch) -> None:
    """Fail the test if anything loads a model (the error must come first)."""
    from bench import models

    def boom(*a, **k):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(models, "load_bundle", boom)
    monkeypatch.setattr(models, "alias_dir", boom)


# --------------------------------------------------------------------------- data


@pytest.mark.parametrize("content", ["", "[]", " [ ]\n", "\n\n"])
def test_empty_eval_file_is_refused_naming_it(layout, content, capsys, monkeypatch):
    _no_model_built(monkeypatch)
    (layout / "retain_perturbed.json").write_text(content)
    err = _one_line(*_run(["run", "--task", "tofu-forget01", "--method", "none", "--data-dir", str(layout)],
                          capsys)[::2])
    assert "retain_perturbed.json" in err and "no rows" in err, err


def test_malformed_row_past_limit_is_found(layout, capsys, monkeypatch):
    _no_model_built(monkeypatch)
    rows = json.loads((layout / "world_facts_perturbed.json").read_text())
    assert len(rows) > 10
    rows[-1]["perturbed_answer"] = "not a list"
    (layout / "world_facts_perturbed.json").write_text(json.dumps(rows))
    err = _one_line(*_run(["run", "--task", "tofu-forget01", "--method", "none", "--data-dir", str(layout),
                           "--limit", "2"], capsys)[::2])
    assert "world_facts_perturbed.json" in err and f"row {len(rows) - 1}" in err and "perturbed_answer" in err


def test_malformed_training_row_is_found_with_limit(layout, capsys, monkeypatch):
    _no_model_built(monkeypatch)
    rows = json.loads((layout / "retain99.json").read_text())
    del rows[500]["answer"]
    (layout / "retain99.json").write_text(json.dumps(rows))
    err = _one_line(*_run(["run", "--task", "tofu-forget01", "--method", "gd", "--data-dir", str(layout),
                           "--limit", "1"], capsys)[::2])
    assert "retain99.json" in err and "row 500" in err and "answer" in err


# --------------------------------------------------------------------------- options and paths


@pytest.mark.parametrize("args, needle", [
    (["--limit", "0"], "argument --limit: expected a positive integer, got '0'"),
    (["--limit", "abc"], "argument --limit: expected a positive integer, got 'abc'"),
    (["--limit", "-3"], "argument --limit: expected a positive integer"),
    (["--seed", "x"], "argument --seed: expected an integer from 0 to 4294967295, got 'x'"),
    (["--seed", "-1"], "argument --seed"),
    (["--train-limit", "0"], "argument --train-limit"),
    (["--prompt-style", "chatty"], "argument --prompt-style: invalid choice"),
])
def test_bad_option_values_are_one_line(args, needle, capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--task", "synthetic-forget01", "--method", "none", *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    assert needle in err, err


def test_missing_required_option_is_one_line(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--task", "synthetic-forget01"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--method" in err, err


def test_out_naming_a_file(tmp_path, tiny_dir, capsys, monkeypatch):
    _no_model_built(monkeypatch)
    f = tmp_path / "results.txt"
    f.write_text("x")
    for out, needle in [(f, "is a file"), (f / "sub", "which is a file")]:
        err = _one_line(*_run(["run", "--task", "synthetic-forget01", "--method", "none", "--model", str(tiny_dir),
                               "--as-is", "--out", str(out)], capsys)[::2])
        assert f"--out '{out}'" in err and needle in err, err


def test_model_dir_without_weights_or_with_truncated_weights(tmp_path, tiny_dir, capsys, monkeypatch):
    _no_model_built(monkeypatch)
    base = ["run", "--task", "synthetic-forget01", "--method", "none", "--as-is"]
    none = tmp_path / "no-weights"
    shutil.copytree(tiny_dir, none)
    (none / "model.safetensors").unlink()
    err = _one_line(*_run([*base, "--model", str(none)], capsys)[::2])
    assert str(none) in err and "has no weights" in err, err
    trunc = tmp_path / "truncated"
    shutil.copytree(tiny_dir, trunc)
    w = trunc / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    err = _one_line(*_run([*base, "--model", str(trunc)], capsys)[::2])
    assert str(w) in err and "truncated" in err, err
    w.write_bytes(b"\x01")
    err = _one_line(*_run([*base, "--model", str(trunc)], capsys)[::2])
    assert "truncated" in err, err
    noconf = tmp_path / "no-config"
    shutil.copytree(tiny_dir, noconf)
    (noconf / "config.json").unlink()
    err = _one_line(*_run([*base, "--model", str(noconf)], capsys)[::2])
    assert "no config.json" in err, err
    # a --reference model is checked up front too
    err = _one_line(*_run(["run", "--task", "synthetic-forget01", "--method", "none", "--as-is", "--model",
                           str(tiny_dir), "--reference", str(none)], capsys)[::2])
    assert "has no weights" in err, err


# --------------------------------------------------------------------------- method adapters


def _adapter(tmp_path: Path, body: str) -> str:
    f = tmp_path / "my_method.py"
    f.write_text("def unlearn(model, forget, retain, *, scale: float = 1.0):\n" + body)
    return f"{f}:unlearn"


def _adapter_run(tmp_path, tiny_dir, method, capsys) -> tuple[str, Path]:
    out = tmp_path / "runs"
    rc, _, err = _run(["run", "--task", "synthetic-forget01", "--method", method, "--model", str(tiny_dir),
                       "--as-is", "--limit", "1", "--out", str(out)], capsys)
    return _one_line(rc, err, strict=False), out


def test_adapter_exception_is_one_line_with_file_and_line_and_logged(tmp_path, tiny_dir, capsys):
    method = _adapter(tmp_path, "    x = 1\n    raise ValueError('my adapter broke')\n")
    err, out = _adapter_run(tmp_path, tiny_dir, method, capsys)
    assert "raised ValueError: my adapter broke" in err, err
    assert f"{tmp_path / 'my_method.py'}:3 (in unlearn)" in err, err
    log = next(out.iterdir()) / "run.log"
    assert f"full traceback in {log}" in err
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "my adapter broke" in text
    assert not (log.parent / "results.json").exists()


def test_adapter_exception_deep_in_a_library_names_the_adapter_line(tmp_path, tiny_dir, capsys):
    method = _adapter(tmp_path, "    import json\n    json.loads('{broken')\n")
    err, _ = _adapter_run(tmp_path, tiny_dir, method, capsys)
    assert "raised JSONDecodeError" in err and f"{tmp_path / 'my_method.py'}:3" in err, err


def test_adapter_writing_nan(tmp_path, tiny_dir, capsys):
    method = _adapter(tmp_path, "    import torch\n"
                      "    with torch.no_grad():\n"
                      "        next(model.module.parameters())[0, 0] = float('nan')\n"
                      "    return model\n")
    err, _ = _adapter_run(tmp_path, tiny_dir, method, capsys)
    assert "non-finite weights" in err and "NaN" in err and "model.embed_tokens.weight" in err, err


@pytest.mark.parametrize("ret, needle", [
    ("'done'", "returned str; it must return the ModelBundle"),
    ("model.module", "returned LlamaForCausalLM; it must return the ModelBundle"),
    ("(model, 1)", "returned tuple"),
    ("None", "returned None and wrote no weight"),
])
def test_adapter_wrong_return(tmp_path, tiny_dir, capsys, ret, needle):
    err, _ = _adapter_run(tmp_path, tiny_dir, _adapter(tmp_path, f"    return {ret}\n"), capsys)
    assert needle in err, err


def test_adapter_returning_none_after_an_in_place_change_is_accepted(tmp_path, tiny_dir, capsys):
    """The documented exception: an in-place method may return None (its bundle is used)."""
    method = _adapter(tmp_path, "    import torch\n"
                      "    with torch.no_grad():\n"
                      "        for p in model.module.parameters():\n"
                      "            p.mul_(0.5)\n")
    out = tmp_path / "runs"
    rc, _, err = _run(["run", "--task", "synthetic-forget01", "--method", method, "--model", str(tiny_dir),
                       "--as-is", "--limit", "1", "--out", str(out)], capsys)
    assert rc == 0, err
    res = json.loads((next(out.iterdir()) / "results.json").read_text())
    assert res["model_identity"]["fingerprint"] != res["model_identity"]["target_fingerprint"]


# --------------------------------------------------------------------------- backends


@pytest.mark.skipif(__import__("importlib").util.find_spec("vllm") is not None, reason="vllm is installed")
def test_vllm_missing_fails_fast_before_prepare(tmp_path):
    """`--backend vllm` without vllm: one line in under 10 s, before the alias is built or prepared
    (a subprocess: the CLI as a user runs it, imports included)."""
    from conftest import shared_data_dir

    env_cache = tmp_path / "cache"
    shared = shared_data_dir()
    task = (["--task", "tofu-forget01", "--data-dir", str(shared / "tofu")] if shared is not None
            else ["--task", "synthetic-forget01"])
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", *task, "--as-is", "--model",
         "smollm2-135m", "--backend", "vllm", "--method", "none"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,  # the installed package, not ./bench
        env={**__import__("os").environ, "BENCH_CACHE": str(env_cache), "HF_HUB_OFFLINE": "1"},
    )
    elapsed = time.time() - t0
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: backend 'vllm'") and proc.stderr.count("\n") == 1, proc.stderr
    assert "not installed" in proc.stderr
    assert elapsed < 10, f"took {elapsed:.1f} s"
    assert not (env_cache / "models").exists() and not (env_cache / "prepared").exists()


def test_vllm_missing_refused_by_prepare_before_training(tmp_path, capsys, monkeypatch):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed")
    _no_model_built(monkeypatch)
    err = _one_line(*_run(["prepare", "--task", "synthetic-forget01", "--backend", "vllm"], capsys)[::2])
    assert "vllm is not installed" in err
