"""MUSE-News tasks: splits against the data README, few-shot prompt layout, PrivLeak's
nodes on hand-made values, sustainability steps, and the data errors."""

from __future__ import annotations

import json
import math

import pytest

from bench.errors import BenchError, DataError
from bench.graph import Results, compute
from bench.items import split_format
from bench.registry import TASKS
from bench.run import build_task
from bench.task import SetResult
from bench.tasks import muse


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


@pytest.fixture()
def mini(tmp_path):
    """A small folder in MUSE-News's layout (local names: retain2_qa, no raw retain, no sust/forget_1)."""
    root = tmp_path / "muse_news"
    _write(root / "raw" / "forget.json", [f"forget article {i} about the harbour." for i in range(5)])
    _write(root / "verbmem" / "forget.json", [{"prompt": f"The harbour {i}", "gt": f"was busy on day {i}."}
                                               for i in range(4)])
    for split in ("forget_qa", "retain2_qa"):
        _write(root / "knowmem" / f"{split}.json", [{"question": f"{split} q{i}?", "answer": f"a{i}"} for i in range(4)])
        _write(root / "knowmem" / f"{split}_icl.json", [{"question": "Q1?", "answer": "A1"},
                                                        {"question": "Q2?", "answer": "A2"}])
    for split in ("forget", "holdout", "retain2"):
        _write(root / "privleak" / f"{split}.json", [f"{split} excerpt {i} text." for i in range(3)])
    for k in (2, 3, 4):
        _write(root / "sust" / f"forget_{k}.json", [f"sust {k} article {i}." for i in range(2)])
    return root


# --- the real data ----------------------------------------------------------------------


@pytest.mark.shared_data
def test_muse_news_splits_on_shared_data(shared_data):
    data = build_task("muse-news", {}).load(shared_data)
    # data README: raw/forget 889 articles; verbmem 100; knowmem 100 + 100; privleak 100 each
    assert len(data.forget) == 889 and split_format(data.forget) == "document"
    assert len(data.retain) == 100 and split_format(data.retain) == "document"  # privleak/retain2 fallback
    assert split_format(data.full) == "document" and len(data.full) == 989
    assert "privleak/retain2" in data.extras["data_notes"]["retain_corpus"]
    sizes = {es.name: len(es.items) for es in data.eval_sets}
    assert sizes == {"verbmem_forget": 100, "knowmem_forget": 100, "knowmem_retain": 100,
                     "privleak_forget": 100, "privleak_holdout": 100}
    forget_texts = {it.answer for it in data.forget}
    assert not forget_texts & {it.answer for it in data.retain}
    by = {es.name: es for es in data.eval_sets}
    assert not {it.answer for it in by["privleak_forget"].items} & {it.answer for it in by["privleak_holdout"].items}
    assert (by["verbmem_forget"].format, by["verbmem_forget"].max_new_tokens) == ("raw", 128)
    for name in ("knowmem_forget", "knowmem_retain"):
        assert (by[name].format, by[name].max_new_tokens, by[name].stop) == ("raw", 32, ("\n\n", "\nQuestion", "Question:"))
        assert by[name].items[0].question.count("Question: ") == 11  # 10 shots + the question
    assert by["privleak_forget"].format == "document"
    assert by["privleak_forget"].metrics[0].options == {"k": 0.4, "min_one": False}
    assert "muse_news/knowmem/retain2_qa.json" in data.files


@pytest.mark.shared_data
def test_muse_news_limit_cuts_eval_sets_only(shared_data):
    data = build_task("muse-news", {}).load(shared_data, limit=3)
    assert all(len(es.items) == 3 for es in data.eval_sets)
    assert len(data.forget) == 889 and len(data.retain) == 100


@pytest.mark.shared_data
def test_muse_news_sust_steps_on_shared_data(shared_data):
    data = build_task("muse-news-sust", {}).load(shared_data, limit=2)
    assert [s.name for s in data.steps] == ["forget_1", "forget_2", "forget_3", "forget_4"]
    assert [len(s.forget) for s in data.steps] == [889, 889, 889, 887]
    # forget_1 is raw/forget (the same file upstream), recorded as such
    assert [it.answer for it in data.steps[0].forget] == [it.answer for it in build_task("muse-news", {}).load(shared_data).forget]
    assert "raw/forget.json" in data.extras["data_notes"]["sust/forget_1"]
    # MUSE's README says pair-wise disjoint; the published files share articles: recorded
    texts = [{it.answer for it in s.forget if it.answer.strip()} for s in data.steps]
    shared = {(i + 1, j + 1): len(texts[i] & texts[j]) for i in range(4) for j in range(i + 1, 4)}
    assert shared == {(1, 2): 62, (1, 3): 61, (1, 4): 57, (2, 3): 42, (2, 4): 48, (3, 4): 47}
    assert "forget_1&forget_2 62" in data.extras["data_notes"]["sust_overlap"]
    assert not set().union(*texts) & {it.answer for it in data.retain}  # forget and retain disjoint
    assert all(s.eval_sets is data.eval_sets for s in data.steps)
    assert len(data.full) == 889 * 3 + 887 + 100


# --- layout, prompts --------------------------------------------------------------------


def test_knowmem_prompt_layout_exact(mini):
    data = build_task("muse-news", {}).load(mini.parent)
    km = next(es for es in data.eval_sets if es.name == "knowmem_retain")
    assert km.items[1].question == ("Question: Q1?\nAnswer: A1\n\nQuestion: Q2?\nAnswer: A2\n\n"
                                    "Question: retain2_qa q1?\nAnswer: ")
    assert km.items[1].answer == "a1" and km.role == "retain"
    vm = next(es for es in data.eval_sets if es.name == "verbmem_forget")
    assert (vm.items[2].question, vm.items[2].answer) == ("The harbour 2", "was busy on day 2.")


def test_retain_qa_hub_name_accepted(mini):
    (mini / "knowmem" / "retain2_qa.json").rename(mini / "knowmem" / "retain_qa.json")
    (mini / "knowmem" / "retain2_qa_icl.json").rename(mini / "knowmem" / "retain_qa_icl.json")
    data = build_task("muse-news", {}).load(mini)
    assert "muse_news/knowmem/retain_qa.json" in data.files


def test_local_raw_retain_preferred_and_recorded(mini):
    _write(mini / "raw" / "retain1.json", ["retain one article.", "retain two article."])
    data = build_task("muse-news", {}).load(mini)
    assert [it.answer for it in data.retain] == ["retain one article.", "retain two article."]
    assert data.extras["data_notes"]["retain_corpus"] == "local raw/retain1.json"


def test_max_docs_cuts_training_corpora_only(mini):
    data = build_task("muse-news", {"max_docs": "2"}).load(mini, limit=1)
    assert len(data.forget) == 2 and len(data.retain) == 2 and len(data.full) == 4
    assert all(len(es.items) == 1 for es in data.eval_sets)
    assert "max_docs" in data.extras["data_notes"]


def test_sust_forget_1_falls_back_to_raw_forget(mini):
    data = build_task("muse-news-sust", {}).load(mini)
    assert [len(s.forget) for s in data.steps] == [5, 2, 2, 2]
    assert [s.name for s in data.steps] == ["forget_1", "forget_2", "forget_3", "forget_4"]
    assert all(s.retain is data.retain for s in data.steps)
    _write(mini / "sust" / "forget_1.json", ["own forget one."])
    data = build_task("muse-news-sust", {}).load(mini)
    assert [it.answer for it in data.steps[0].forget] == ["own forget one."]
    assert "sust/forget_1" not in data.extras["data_notes"]


# --- errors -------------------------------------------------------------------------------


def test_missing_sust_split_names_file(mini):
    (mini / "sust" / "forget_3.json").unlink()
    with pytest.raises(DataError, match=r"sust/forget_3\.json: file not found.*copy MUSE-News sust/forget_3"):
        build_task("muse-news-sust", {}).load(mini)


def test_missing_knowmem_file_names_both_names(mini):
    (mini / "knowmem" / "retain2_qa.json").unlink()
    with pytest.raises(DataError, match=r"knowmem/retain_qa\.json: file not found \(nor knowmem/retain2_qa\.json.*; "
                                        r"use an unchanged copy of MUSE-News \(data/bbc of jaechan-repo/muse_bench"):
        build_task("muse-news", {}).load(mini)


def test_bad_rows_named(mini):
    _write(mini / "verbmem" / "forget.json", [{"prompt": "p", "gt": "g"}, {"prompt": "p"}])
    with pytest.raises(DataError, match=r"verbmem/forget\.json, row 1, field 'gt': missing field; use an unchanged "
                                        r"copy of MUSE-News"):
        build_task("muse-news", {}).load(mini)
    _write(mini / "verbmem" / "forget.json", [{"prompt": "p", "gt": "g"}])
    _write(mini / "raw" / "forget.json", ["text", 3])
    with pytest.raises(DataError, match=r"raw/forget\.json, row 1"):
        build_task("muse-news", {}).load(mini)


def test_options_checked():
    with pytest.raises(BenchError, match="retain_corpus must be one of auto, retain1"):
        build_task("muse-news", {"retain_corpus": "retain9"})
    with pytest.raises(BenchError, match="not a finished run directory"):
        build_task("muse-news", {"retrained": "/nonexistent/run"})
    with pytest.raises(BenchError, match="has no option 'retrain'; did you mean 'retrained'"):
        build_task("muse-news", {"retrain": "x"})


def test_retain1_option_without_file_or_hub(mini):
    with pytest.raises(DataError, match=r"raw/retain1\.json: file not found and the hub is not reachable"):
        build_task("muse-news", {"retain_corpus": "retain1"}).load(mini)


# --- PrivLeak nodes ---------------------------------------------------------------------


def _privleak_sets(forget: list[float], holdout: list[float]) -> dict[str, SetResult]:
    return {"privleak_forget": SetResult("privleak_forget", [f"f/{i}" for i in range(len(forget))], {}, {"mia_min_k": forget}),
            "privleak_holdout": SetResult("privleak_holdout", [f"h/{i}" for i in range(len(holdout))], {}, {"mia_min_k": holdout})}


def test_privleak_against_published_constant():
    task = TASKS.get("muse-news")()
    # every forget score above every holdout score: AUC 1 (ours), AUC' = 0 -> -100
    vals, notes = compute(task.derived(), {"self": Results(_privleak_sets([-1.0, -2.0], [-3.0, -4.0]))})
    assert vals["mia_min_k_auc"] == 1.0
    assert vals["privleak"] == pytest.approx(-100.0)
    # AUC 0.25 (ours) -> AUC' 0.75: (0.75 - 0.4772) / 0.4772 * 100
    vals, notes = compute(task.derived(), {"self": Results(_privleak_sets([-3.0, -1.5], [-2.0, -1.0]))})
    assert vals["mia_min_k_auc"] == 0.25
    assert vals["privleak"] == pytest.approx((0.75 - 0.4772) / 0.4772 * 100)
    assert vals["privleak_retain"] is None and "retain-only reference" in notes["privleak_retain"]
    node = next(n for n in task.derived() if n.name == "privleak" and n.key is None)
    assert "MUSE published" in node.options["reference_source"] and "0.4772" in node.options["reference_source"]
    assert node.options["reference_auc"] == pytest.approx(1 - 0.4772)


def test_privleak_against_retrained_run(tmp_path):
    (tmp_path / "results.json").write_text("{}")
    task = build_task("muse-news", {"retrained": str(tmp_path)})
    assert task.reference_runs() == {"retrained": tmp_path}
    me = Results(_privleak_sets([-1.0, -2.0], [-3.0, -1.5]))  # AUC 0.75 -> AUC' 0.25
    # the retrained run's own AUC node: 0.5 -> AUC' 0.5
    retrained = Results(_privleak_sets([-3.0, -1.0], [-2.0, -1.5]), {"mia_min_k_auc": 0.5})
    vals, notes = compute(task.derived(), {"self": me, "retrained": retrained, "retain": retrained})
    assert vals["mia_min_k_auc"] == 0.75
    assert vals["privleak"] == pytest.approx((0.25 - 0.5) / 0.5 * 100)
    assert vals["privleak_retain"] == pytest.approx(-50.0)
    assert not notes
    # without the retrained run the node is missing, with the reason
    vals, notes = compute(task.derived(), {"self": me})
    assert vals["privleak"] is None and "retrained-model run" in notes["privleak"]
    assert math.isclose(vals["mia_min_k_auc"], 0.75)


def test_knowmem_prompt_and_overlap_helpers():
    assert muse.knowmem_prompt([], "Who?") == "Question: Who?\nAnswer: "
    assert muse.knowmem_prompt([("a?", "b")], "c?") == "Question: a?\nAnswer: b\n\nQuestion: c?\nAnswer: "
    assert muse.sust_overlaps([("x", ["t1", "t2", " "]), ("y", ["t2", " "]), ("z", ["t3"])]) == {("x", "y"): 1}


def test_task_reference_run_applies_to_every_step(tmp_path):
    """A task's static reference (the retrained run) is read for every step of a multi-step
    run, while an ordinary one-step reference (role retain) has nothing past step 0."""
    from bench.run import Models, _step_references

    sets = {"privleak_forget": {"name": "privleak_forget", "item_ids": ["f/0"], "aggregates": {},
                                "per_item": {"mia_min_k": [-1.0]}}}
    (tmp_path / "results.json").write_text(json.dumps({"steps": [{"aggregates": {"privleak_auc": 0.5}}],
                                                       "sets": sets}))
    models_ = Models("target", None, {"retrained": tmp_path, "retain": tmp_path}, static=("retrained",))
    refs = _step_references(models_, 2, {}, [], None)
    assert set(refs) == {"retrained"}
    assert refs["retrained"].derived == {"privleak_auc": 0.5}
    assert set(_step_references(models_, 0, {}, [], None)) == {"retrained", "retain"}
