"""``--limit`` caps what is evaluated, never the training data; ``--train-limit`` caps what a
method trains on (recorded), never the prepared models."""

from __future__ import annotations

import json
import shutil

import pytest

from bench.cli import main


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))


def test_limit_does_not_change_the_prepared_retain_model(tmp_path, monkeypatch):
    """Prepared with --limit 4, then (the tiny base and the prepared models deleted) without
    a limit: the tiny base is built from the same texts and general knowledge, the retain-only
    model is fine-tuned on the same items, and both have the same fingerprints.

    Fine-tuning is replaced by a deterministic stand-in that writes a function of the items it
    was given into the weights (the real loop's determinism is tested in test_training.py):
    the fingerprint then differs exactly when the training items differ."""
    import hashlib

    import torch

    from bench import run as run_mod
    from bench import training
    from bench.models import load_bundle
    from bench.paths import cache_dir
    from bench.provenance import dir_fingerprint

    trained: list[list[str]] = []

    def stand_in(bundle, items, **kwargs):
        ids = [it.id for it in items]
        trained.append(ids)
        seed = int(hashlib.sha256("|".join(ids).encode()).hexdigest()[:8], 16)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in bundle.module.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 1e-3)

    monkeypatch.setattr(training, "finetune", stand_in)
    monkeypatch.setenv("BENCH_PREPARE_PARALLEL", "0")  # the stand-in lives in this process only
    # the reference evaluations prepare() starts are not what this test is about
    evaluated: list[int | None] = []
    monkeypatch.setattr(run_mod, "run", lambda spec, log=print, _data=None: evaluated.append(spec.limit) or tmp_path)
    prints: list[str] = []
    fps, infos = [], []
    for limit in (4, None):
        shutil.rmtree(cache_dir() / "prepared", ignore_errors=True)
        shutil.rmtree(cache_dir() / "models", ignore_errors=True)  # the tiny base is rebuilt too
        spec = run_mod.RunSpec(task="synthetic-forget01", model="tiny", limit=limit)
        task, data = run_mod.load_task(spec)
        assert len(data.retain) == 792 and len(data.forget) == 8
        assert [len(es.items) for es in data.eval_sets] == ([4] * 4 if limit else [8, 80, 32, 32])
        p = run_mod.prepare(spec, task, data, log=prints.append)
        (base,) = (cache_dir() / "models").iterdir()
        fps.append((dir_fingerprint(p.retain_dir), dir_fingerprint(p.target_dir),
                    load_bundle(p.retain_dir).fingerprint(), base.name, dir_fingerprint(base)))
        infos.append(json.loads((p.retain_dir / "bench_prepared.json").read_text()))
    assert sum("fine-tuning the retain99 model" in line for line in prints) == 2, prints  # built twice
    assert evaluated == [4, 4, None, None]  # the reference runs do see the limit
    assert infos[0]["items"] == infos[1]["items"] == 792 + 64  # retain99 + the replayed general knowledge
    # trained: [tiny pretrain, full, retain] for limit 4, then the same three without a limit
    assert len(trained) == 6 and trained[:3] == trained[3:] and len(trained[2]) == 792 + 64
    assert fps[0] == fps[1] and fps[0][0] != fps[0][1]


def test_train_limit_caps_the_method_data_and_is_recorded(tmp_path, tiny_bundle, capsys):
    from bench.models import save_bundle

    model = tmp_path / "tiny-model"
    save_bundle(tiny_bundle, model)
    seen = tmp_path / "seen.json"
    adapter = tmp_path / "count.py"
    adapter.write_text(
        "import json\n"
        "def unlearn(model, forget, retain):\n"
        f"    open({str(seen)!r}, 'w').write(json.dumps([len(forget), len(retain), forget[0].id]))\n"
        "    return model\n"
    )
    common = ["run", "--task", "synthetic-forget01", "--method", f"{adapter}:unlearn", "--model", str(model),
              "--as-is", "--limit", "1"]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    assert json.loads(seen.read_text()) == [8, 792, "forget01/0"]  # --limit never cuts training data
    assert main([*common, "--train-limit", "3", "--out", str(tmp_path / "b")]) == 0
    assert json.loads(seen.read_text()) == [3, 3, "forget01/0"]
    (a,), (b,) = (list((tmp_path / d).iterdir()) for d in ("a", "b"))
    ra, rb = (json.loads((d / "results.json").read_text())["config"] for d in (a, b))
    assert "train_limit" not in ra and rb["train_limit"] == 3
    assert a.name != b.name  # part of the run's hash
    capsys.readouterr()
