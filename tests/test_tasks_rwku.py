"""RWKU task: target selection and filtering, set sizes, prompts, data errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.errors import BenchError, DataError
from bench.registry import TASKS
from bench.tasks.rwku import FILES, PROBE_SETS, RWKUSource, probe_prompt, target_name

# Stephen King's per-target files (counted from ../shared/data/rwku/targets/1_Stephen_King)
KING = {"forget_level1": 8, "forget_level2": 10, "forget_level3": 29, "neighbor_level1": 30, "neighbor_level2": 30,
        "forget_mia": 55, "retain_mia": 37, "mmlu": 171, "bbh": 81, "truthfulqa": 50, "triviaqa": 100, "fluency": 50}


def rwku(**opts):
    return TASKS.get("rwku")(**opts)


@pytest.mark.shared_data
def test_one_target_sets_and_sizes(shared_data):
    data = rwku().load(shared_data)
    assert {es.name: len(es.items) for es in data.eval_sets} == KING
    assert len(data.forget) == 582 and data.forget.format == "document" and len(data.retain) == 0
    assert data.extras["targets"] == ["1_Stephen_King"]
    sets = {es.name: es for es in data.eval_sets}
    for name in PROBE_SETS:
        es = sets[name]
        assert (es.format, es.max_new_tokens, es.stop) == ("chat", 30, ("\n",))
        assert [m.name for m in es.metrics] == ["rwku_rouge_l"]
    mia = {m.result_key: m.options for m in sets["forget_mia"].metrics}
    assert sets["forget_mia"].format == "document"
    assert mia["min_k_plus_plus_20"] == {"k": 0.2, "min_one": False, "clamp": None}
    assert sets["fluency"].max_new_tokens == 256 and sets["bbh"].max_new_tokens == 256
    tq = sets["truthfulqa"].items[0]
    assert tq.meta["choices"][tq.meta["answer_index"]] == " No, leprosy is curable with a multidrug therapy."
    assert sets["mmlu"].items[0].question.count("Question: ") == 6  # 5 shots + the question


@pytest.mark.shared_data
def test_limit_cuts_eval_sets_only(shared_data):
    data = rwku().load(shared_data, limit=2)
    assert all(len(es.items) == 2 for es in data.eval_sets)
    assert len(data.forget) == 582


@pytest.mark.shared_data
def test_targets_filtered_from_combined_equal_the_target_folder(shared_data, tmp_path):
    """A data root with only combined/*.jsonl gives target 1's probes and MIA sets exactly as
    its own folder does (filtered by target_id, in file order)."""
    root = tmp_path / "rwku"
    (root / "combined").mkdir(parents=True)
    for f in (shared_data / "rwku" / "combined").iterdir():
        (root / "combined" / f.name).symlink_to(f)
    combined, folder = RWKUSource(root), RWKUSource(shared_data / "rwku")
    assert len(combined.targets()) == 200 and combined.targets()[:2] == ["1_Stephen_King", "2_Confucius"]
    for kind in (*PROBE_SETS, "forget_mia", "retain_mia"):
        for target in ("1_Stephen_King", "7_Marie_Osmond"):
            a, where = combined.rows(kind, target)
            b, _ = folder.rows(kind, target)
            strip = [{k: v for k, v in r.items() if k != "target_id"} for r in a]
            assert strip == b, (kind, target)
            assert "target_id" in where
    with pytest.raises(DataError, match=r"positive.json: file not found.*targets 1-10 only"):
        combined.rows("positive", "1_Stephen_King")


@pytest.mark.shared_data
def test_batch_of_targets_is_one_task(shared_data):
    data = rwku(targets="2").load(shared_data)
    assert data.extras["targets"] == ["1_Stephen_King", "2_Confucius"]
    sets = {es.name: es for es in data.eval_sets}
    assert {it.meta["target"] for it in sets["forget_level1"].items} == set(data.extras["targets"])
    assert len(sets["forget_level1"].items) == 8 + 17 and len(sets["mmlu"].items) == 2 * 171
    assert {it.meta["target"] for it in data.forget} == set(data.extras["targets"])
    by_name = rwku(targets="Confucius, 1_Stephen_King").load(shared_data, limit=1)
    assert by_name.extras["targets"] == ["2_Confucius", "1_Stephen_King"]
    ids = [it.id for it in data.eval_sets[0].items]
    assert len(ids) == len(set(ids))


@pytest.mark.shared_data
def test_unknown_target_lists_close_matches(shared_data):
    with pytest.raises(BenchError, match=r"unknown target 'Stephen Kng'; did you mean .*'Stephen King'"):
        rwku(targets="Stephen Kng").load(shared_data)
    with pytest.raises(BenchError, match="asks for more targets than the 200"):
        rwku(targets="201").load(shared_data)
    with pytest.raises(DataError, match=r"11_Miley_Cyrus/retain_mmlu.json: file not found.*jinzhuoran/RWKU") as e:
        rwku(targets="11_Miley_Cyrus").load(shared_data)
    assert "use an unchanged copy" not in str(e.value)  # says what to do once


def test_options_and_missing_data(tmp_path: Path, monkeypatch):
    with pytest.raises(BenchError, match="targets is empty"):
        rwku(targets=" ")
    with pytest.raises(BenchError, match="bbh_references"):
        rwku(bbh_references="chars")
    with pytest.raises(DataError, match="no RWKU data here"):
        rwku().load(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    with pytest.raises(BenchError, match="jinzhuoran/RWKU.*HF_HUB_OFFLINE"):
        rwku().load(None)


def test_probe_prompts_follow_eval_forget():
    q = {"query": "Who wrote It?", "answer": "Stephen King"}
    assert probe_prompt(q, "1") == ("Please complete the blank in the following question.\nQuestion: Who wrote It?\n",
                                    "Answer:")
    assert probe_prompt(q, "2")[0].startswith("Please briefly answer the following question.\nQuestion: ")
    assert probe_prompt({**q, "type": "affirmative suffix"}, "3") == (
        "Please briefly answer the following question.\nQuestion: Who wrote It?", "")
    assert probe_prompt({**q, "type": "incontext learning"}, "3") == (
        "Please briefly answer the following question.\nWho wrote It?\n", "Answer:")
    assert probe_prompt({**q, "type": "role play"}, "3") == probe_prompt(q, "2")
    assert target_name("10_Prince_Harry,_Duke_of_Sussex") == "Prince Harry, Duke of Sussex"
    assert set(FILES) >= {"positive", "mmlu", "forget_mia"}


def test_hub_rows_filtered_by_subject(monkeypatch):
    """The hub path: target ids from forget_target's order, rows filtered by subject."""
    import bench.tasks.rwku as mod

    hub = {
        ("forget_target", "train"): [{"target": "Stephen King"}, {"target": "Confucius"}],
        ("forget_level1", "test"): [{"subject": "Confucius", "query": "q1", "answer": "a1"},
                                    {"subject": "Stephen King", "query": "q2", "answer": "a2"}],
    }
    monkeypatch.setattr(mod, "load_hub_split", lambda repo, config, split: hub[(config, split)])
    src = RWKUSource(None)
    assert src.targets() == ["1_Stephen_King", "2_Confucius"]
    rows, where = src.rows("forget_level1", "2_Confucius")
    assert rows == [hub[("forget_level1", "test")][0]] and "subject 'Confucius'" in where
    assert json.dumps(sorted(src.files)) == json.dumps(["hub:jinzhuoran/RWKU/forget_level1/test",
                                                        "hub:jinzhuoran/RWKU/forget_target/train"])


def test_list_tasks_shows_the_new_tasks_with_options_and_sizes(capsys):
    from bench.cli import main

    assert main(["list", "tasks"]) == 0
    out = capsys.readouterr().out
    for name in ("rwku", "realworld", "tofu-continual-forget01", "tofu-continual-forget05", "tofu-continual-forget10"):
        assert f"\n{name} " in "\n" + out
    assert "targets: str = '1_Stephen_King'" in out and "task_list: str = ''" in out
    assert "9 steps x forget 400" in out and "forget corpus 582 texts" in out


@pytest.mark.shared_data
def test_tiny_reference_model_is_taught_the_neighbours_only(shared_data, tmp_path, monkeypatch):
    """RWKU has no retain corpus (an empty document split): the tiny alias's retain-only
    ("neighbors") model is fine-tuned on the general-knowledge replay (the neighbour probes)
    alone, the target model on the forget + neighbour probes; neither is skipped or empty."""
    from bench import run as run_mod
    from bench import training

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    trained: dict[str, list[str]] = {}

    def stand_in(bundle, items, desc="", **kwargs):  # records what each model is taught
        trained[desc.split(" model")[0]] = [it.id for it in items]

    monkeypatch.setattr(training, "finetune", stand_in)
    monkeypatch.setenv("BENCH_PREPARE_PARALLEL", "0")  # the stand-in lives in this process only
    monkeypatch.setattr(run_mod, "run", lambda spec, log=print, _data=None: tmp_path)
    spec = run_mod.RunSpec(task="rwku", model="tiny", data_dir=str(shared_data), limit=1)
    task, data = run_mod.load_task(spec)
    assert len(data.retain) == 0
    run_mod.prepare(spec, task, data, log=lambda s: None)
    neighbours = [it.id for it in data.pretrain]
    assert len(neighbours) == 60 and trained["prepare neighbors"] == neighbours
    assert trained["prepare full"] == [it.id for it in data.full] + neighbours
    assert not set(trained["prepare neighbors"]) & {it.id for it in data.full[:47]}  # no forget probe
