"""The prepared models' cache key names what their fine-tuning reads: the same questions and
answers trained in another format (raw text, chat with an answer lead) are other models."""

from __future__ import annotations

from dataclasses import replace

from bench.items import Item, Split


def test_same_pairs_in_another_format_are_another_prepared_model(tmp_path, monkeypatch):
    """synthetic-forget01's splits as "raw" splits (BOS + question, the answer as the
    continuation) and as "chat" splits (the question as the chat template's user turn): two
    fine-tuning sets, two prepared directories (before, the key hashed (question, answer)
    only and the chat run reused the raw models). General knowledge is replayed into
    "model" splits only, so both sets hold the same pairs."""
    from bench import run as run_mod
    from bench import training

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BENCH_PREPARE_PARALLEL", "0")
    seen: list[str] = []
    monkeypatch.setattr(training, "finetune", lambda bundle, items, **kw: seen.append(getattr(items, "format", "model")))
    monkeypatch.setattr(run_mod, "run", lambda spec, log=print, _data=None: tmp_path)
    spec = run_mod.RunSpec(task="synthetic-forget01", model="tiny", limit=1)
    task, data = run_mod.load_task(spec)
    raw, chat = (replace(data, full=Split(data.full, format=f), retain=Split(data.retain, format=f))
                 for f in ("raw", "chat"))
    a = run_mod.prepare(spec, task, raw, log=lambda _: None)
    b = run_mod.prepare(spec, task, chat, log=lambda _: None)
    assert a.target_dir != b.target_dir and a.retain_dir != b.retain_dir
    assert seen[1:] == ["raw", "raw", "chat", "chat"]  # after the tiny base: all four fine-tuned


def test_items_hash_reads_format_and_answer_leads_and_keeps_model_keys():
    from bench.provenance import spec_hash
    from bench.run import _items_hash

    items = [Item("a", "Q?", "A."), Item("b", "R?", "B.")]
    assert _items_hash(items) == _items_hash(Split(items)) == spec_hash([("Q?", "A."), ("R?", "B.")])[:12]
    assert len({_items_hash(Split(items, format=f)) for f in ("model", "raw", "chat", "document")}) == 4
    lead = [replace(it, meta={"answer_lead": "Answer:"}) for it in items]
    assert _items_hash(Split(lead, format="chat")) != _items_hash(Split(items, format="chat"))
    assert _items_hash(Split(lead, format="raw")) == _items_hash(Split(items, format="raw"))  # read by chat only
