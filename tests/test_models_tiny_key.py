"""The ``tiny`` alias's cache key: the directory a task's tiny model is cached under names
everything its build reads, and ``--limit`` (which cuts only the eval sets) changes neither
the key nor the model, whichever of the runs with and without it comes first."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from bench import models
from bench.items import EvalSet, Item, TaskData
from bench.run import RunSpec, load_task

FAST_PRETRAIN = (("epochs", 1), ("lr", 3e-3), ("batch_size", 16))


@pytest.fixture
def fast_tiny(monkeypatch):
    """One pretraining epoch: the build is the real one, a few seconds shorter."""
    monkeypatch.setattr(models, "TINY_PRETRAIN", FAST_PRETRAIN)


def _build(cache: Path, monkeypatch, limit: int | None) -> Path:
    monkeypatch.setenv("BENCH_CACHE", str(cache))
    task, data = load_task(RunSpec(task="synthetic-forget01", model="tiny", limit=limit))
    return models.alias_dir("tiny", data, task.family)


def _identity(d: Path) -> tuple[str, str, str]:
    return (d.name, hashlib.sha256((d / "tokenizer.json").read_bytes()).hexdigest(),
            models.load_bundle(d).fingerprint())


def test_limit_never_changes_the_tiny_model_whichever_run_builds_it(tmp_path, monkeypatch, fast_tiny):
    """Cache A is built by a --limit 2 run, cache B by a run without a limit; each is then
    used by the other kind of run. Every run sees the same directory name, tokenizer and
    weights (before the fix cache A held a tokenizer trained on the cut eval sets)."""
    a_first = _build(tmp_path / "a", monkeypatch, 2)
    a_then = _build(tmp_path / "a", monkeypatch, None)
    b_first = _build(tmp_path / "b", monkeypatch, None)
    b_then = _build(tmp_path / "b", monkeypatch, 2)
    assert a_first == a_then and b_first == b_then  # one key with and without the limit
    assert _identity(a_first) == _identity(b_first)


def test_the_tiny_model_is_built_from_the_data_without_the_limit(tmp_path, monkeypatch, fast_tiny):
    """The texts its tokenizer is trained on are those of the unlimited data (the eval sets
    whole), even when only a --limit 2 run ever built it."""
    seen: list[list[str]] = []
    real = models._task_texts
    monkeypatch.setattr(models, "_task_texts", lambda data: seen.append(real(data)) or seen[-1])
    _build(tmp_path, monkeypatch, 2)
    task, full = load_task(RunSpec(task="synthetic-forget01"))
    assert [len(es.items) for es in full.eval_sets] == [8, 80, 32, 32]
    assert seen and all(texts == real(full) for texts in seen)


def _data(answers: list[str], files: dict[str, str]) -> TaskData:
    items = [Item(f"q/{i}", f"Question {i}?", a) for i, a in enumerate(answers)]
    return TaskData(forget=items[:1], retain=items[1:], full=items,
                    eval_sets=[EvalSet("forget", items[:1], [])], files=files)


def test_the_key_names_the_content_not_only_the_files():
    """Same recorded files, other texts (a task option such as MUSE's max_docs, or a data
    object loaded with a limit by hand): other key. Before, the key hashed the files only."""
    files = {"x/full.json": "0" * 64}
    a, b = _data(["alpha", "beta"], files), _data(["alpha", "gamma"], files)
    assert models.data_key(a) == models.data_key(b)
    assert models.tiny_key(a) != models.tiny_key(b)
    assert models.tiny_key(a) == models.tiny_key(_data(["alpha", "beta"], dict(files)))  # stable


def test_the_key_names_the_tiny_settings(monkeypatch):
    """A changed pretraining schedule or model shape builds a new model, not a stale hit."""
    data = _data(["alpha", "beta"], {})
    key = models.tiny_key(data)
    monkeypatch.setattr(models, "TINY_PRETRAIN", FAST_PRETRAIN)
    assert models.tiny_key(data) != key
    monkeypatch.undo()
    monkeypatch.setattr(models, "TINY_SHAPE", (*models.TINY_SHAPE[:1], ("hidden", 64), *models.TINY_SHAPE[2:]))
    assert models.tiny_key(data) != key


def test_unlimited_data_comes_from_the_loader_once():
    """``load_task`` with a limit leaves a cached loader of the unlimited data (one reload per
    run however many times the key is asked for); without a limit the data is its own."""
    _, data = load_task(RunSpec(task="synthetic-forget01", limit=2))
    assert [len(es.items) for es in models.unlimited(data).eval_sets] == [8, 80, 32, 32]
    assert models.unlimited(data) is models.unlimited(data)
    _, full = load_task(RunSpec(task="synthetic-forget01"))
    assert models.UNLIMITED not in full.extras and models.unlimited(full) is full
    assert models.tiny_key(data) == models.tiny_key(full)
    plain = replace(data, extras={k: v for k, v in data.extras.items() if k != models.UNLIMITED})
    assert models.tiny_key(plain) != models.tiny_key(full)  # other content, other key: never a shared one


def test_the_tiny_tokenizer_is_trained_on_texts_as_the_model_sees_them():
    """Trained on plain prompts and prefixed answers: "Question:" and "\\nAnswer:" are a few
    tokens, not a dozen, and a question's and an answer's first word keep their space
    (" What" is one token, not " " + "What"): every training sequence has both."""
    from bench.prompts import PromptConfig
    from bench.tiny import build_tokenizer

    _, data = load_task(RunSpec(task="synthetic-forget10", model="tiny"))
    texts = models._task_texts(data)
    plain = PromptConfig(style="plain")
    for it in (data.full[0], data.pretrain[0], data.eval_sets[-1].items[0]):
        assert plain.prompt(it.question) in texts and plain.continuation(it.answer) in texts
    vocab = dict(models.TINY_SHAPE)["vocab_size"]
    seq = plain.prompt("What is it?") + plain.continuation("The end.")

    def pieces(tok: object) -> list[str]:
        return [tok.decode([i]) for i in tok(seq, add_special_tokens=False)["input_ids"]]  # type: ignore[attr-defined]

    got = pieces(build_tokenizer(texts, vocab_size=vocab))
    assert got[:3] == ["Question", ":", " What"]
    assert got[got.index("\n"):][:4] == ["\n", "Answer", ":", " The"]
    # the bare strings (questions and answers alone): the template in pieces, the spaces alone
    bare = [t.strip() for t in texts if not t.startswith("Question:")] + [it.question for it in data.full]
    old = pieces(build_tokenizer(bare, vocab_size=vocab))
    assert len(old) >= len(got) + 6 and " What" not in old and " The" not in old
