"""Tasks: TOFU loader (real data and a synthetic TOFU-layout folder), the synthetic
generator, and TOFU's aggregates (forget quality, model utility)."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from bench.data import records_sha256, sha256_file
from bench.errors import BenchError, DataError
from bench.registry import TASKS
from bench.task import SetResult
from bench.tasks import synthetic as syn
from bench.tasks.tofu import EVAL_SET_NAMES, tofu_aggregates

# sha256 of the default synthetic data's rows; change it only with a deliberate generator
# change (and bump GENERATOR_VERSION): trained tiny models and stored runs depend on it.
SYNTHETIC_FULL_SHA256 = "f1d3e9a99e67a3b7cc50a3d38c6079e13cee1ef8c4608bb5e03e858c0ed92d95"


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch):
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """The default synthetic data written in TOFU's layout (``<tmp>/tofu``)."""
    return syn.write_tofu_layout(tmp_path_factory.mktemp("data") / "tofu")


# --- registry -----------------------------------------------------------------------------


def test_tasks_registered_with_family_and_reference():
    expected = {
        "tofu-forget01": ("tofu", "retain99"), "tofu-forget05": ("tofu", "retain95"),
        "tofu-forget10": ("tofu", "retain90"), "synthetic-forget01": ("synthetic", "retain99"),
        "synthetic-forget05": ("synthetic", "retain95"), "synthetic-forget10": ("synthetic", "retain90"),
    }
    descriptions = {e.name: e.description for e in TASKS.entries()}
    for name, (family, ref) in expected.items():
        cls = TASKS.get(name)
        assert (cls.name, cls.family, cls.reference_key) == (name, family, ref)
        assert descriptions[name]


# --- TOFU on the real data ----------------------------------------------------------------


def _shared_sums(shared_data) -> dict[str, str]:
    sums = {}
    for line in (shared_data / "SHA256SUMS").read_text().splitlines():
        digest, path = line.split(maxsplit=1)
        sums[path.removeprefix("./")] = digest
    return sums


@pytest.mark.shared_data
def test_tofu_forget01_real_data(shared_data):
    data = TASKS.get("tofu-forget01")().load(shared_data)
    sets = {s.name: s for s in data.eval_sets}
    assert [s.name for s in data.eval_sets] == list(EVAL_SET_NAMES)
    assert {k: len(v.items) for k, v in sets.items()} == {
        "forget": 40, "retain": 400, "real_authors": 100, "world_facts": 117}
    assert (len(data.forget), len(data.retain), len(data.full)) == (40, 3960, 4000)
    assert len(data.extras["refusals"]) == 100 and len(data.extras["holdout"]) == 40
    # the tiny base's general knowledge: all 100 + 117 rows, whatever --limit
    assert len(data.pretrain) == 217 and data.pretrain[0].answer == "William Shakespeare"
    assert [it.id for it in TASKS.get("tofu-forget01")().load(shared_data, limit=3).pretrain] == [
        it.id for it in data.pretrain]
    f0 = sets["forget"].items[0]
    assert f0.id == "forget/0" and f0.answer == data.forget[0].answer
    assert f0.answer.endswith("Basil Mahfouz Al-Kuwaiti.")
    assert len(f0.perturbed_answers) == 5 and f0.paraphrased_answer
    assert "paraphrased_question" in f0.meta
    ra0 = sets["real_authors"].items[0]
    assert ra0.id == "real_authors/0" and ra0.answer == "William Shakespeare"
    assert ra0.perturbed_answers == ("Charles Dickens", "Virginia Woolf", "Mark Twain")
    assert all(s.max_new_tokens == 200 for s in data.eval_sets)
    assert sets["forget"].role == "forget" and sets["retain"].role == "retain"
    assert sets["forget"].source == "tofu/forget01_perturbed.json"
    # every file read is recorded with the sha256 that the data's own SHA256SUMS pins
    sums = _shared_sums(shared_data)
    assert set(data.files) == {
        f"tofu/{n}" for n in ("forget01.json", "forget01_perturbed.json", "retain99.json",
                              "full.json", "retain_perturbed.json", "real_authors_perturbed.json",
                              "world_facts_perturbed.json", "holdout01.json", "idontknow.jsonl")}
    for key, digest in data.files.items():
        assert digest == sums[key], key


@pytest.mark.shared_data
def test_tofu_metrics_per_set(shared_data):
    data = TASKS.get("tofu-forget05")().load(shared_data / "tofu", limit=2)
    specs = {s.name: [(m.name, dict(m.options)) for m in s.metrics] for s in data.eval_sets}
    assert specs["forget"] == [
        ("probability", {"normalized": False}), ("rouge_l", {}),
        ("truth_ratio", {"mode": "forget", "paraphrase_field": "paraphrased_answer"}),
        ("extraction_strength", {}), ("exact_memorization", {})]
    assert specs["retain"] == [
        ("probability", {"normalized": False}), ("rouge_l", {}),
        ("truth_ratio", {"mode": "retain", "paraphrase_field": "paraphrased_answer"})]
    options = [("probability", {"normalized": True}), ("rouge_l", {}),
               ("truth_ratio", {"mode": "retain", "paraphrase_field": "answer"})]
    assert specs["real_authors"] == options and specs["world_facts"] == options


@pytest.mark.shared_data
def test_tofu_limit_and_forget10(shared_data):
    data = TASKS.get("tofu-forget10")().load(shared_data, limit=5)
    assert [len(s.items) for s in data.eval_sets] == [5, 5, 5, 5]
    assert [i.id for i in data.eval_sets[1].items] == [f"retain/{i}" for i in range(5)]
    # --limit caps what is evaluated, never the training splits (the prepared models)
    assert (len(data.forget), len(data.retain), len(data.full)) == (400, 3600, 4000)
    assert len(data.extras["holdout"]) == 5
    assert "tofu/forget10_perturbed.json" in data.files and "tofu/retain90.json" in data.files
    full = TASKS.get("tofu-forget10")().load(shared_data)
    assert (len(full.forget), len(full.retain), len(full.eval_sets[0].items)) == (400, 3600, 400)
    # forget10 is the last 400 rows of full (TOFU's forget authors are the last ones)
    assert [i.question for i in full.forget] == [i.question for i in full.full[-400:]]


@pytest.mark.shared_data
@pytest.mark.parametrize("size,n", [("01", 40), ("05", 200), ("10", 400)])
def test_tofu_forget_and_retain_disjoint_and_sized(shared_data, size, n):
    """Data README: forget01/05/10 = 40/200/400 QA, retain99/95/90 the rest of the 4000;
    no (question, answer) pair is in both, and together they are the full set."""
    data = TASKS.get(f"tofu-forget{size}")().load(shared_data)
    pairs = [{(it.question, it.answer) for it in split} for split in (data.forget, data.retain, data.full)]
    assert (len(data.forget), len(data.retain)) == (n, 4000 - n) and len(pairs[0]) == n
    assert not pairs[0] & pairs[1] and pairs[0] | pairs[1] == pairs[2]
    holdout = {it.question for it in data.extras["holdout"]}
    assert len(holdout) == n and not holdout & {it.question for it in data.full}


def test_limit_must_be_positive(layout):
    with pytest.raises(BenchError, match="limit must be a positive integer"):
        TASKS.get("tofu-forget01")().load(layout, limit=0)
    with pytest.raises(BenchError, match="limit must be a positive integer"):
        TASKS.get("synthetic-forget01")().load(limit=-3)


# --- TOFU loader on a synthetic TOFU-layout folder (no shared data needed) ------------------


def test_tofu_loader_reads_synthetic_layout(layout):
    gen = syn.generate()
    for split, n_authors in (("forget01", 1), ("forget05", 5), ("forget10", 10)):
        data = TASKS.get(f"tofu-{split}")().load(layout.parent)  # parent of tofu/ works too
        n = n_authors * 8
        assert (len(data.forget), len(data.retain), len(data.full)) == (n, 800 - n, 800)
        assert [len(s.items) for s in data.eval_sets] == [n, 80, len(syn.CLASSIC_BOOKS),
                                                          len(syn.CAPITALS)]
        assert len(data.extras["holdout"]) == n
        assert data.extras["refusals"] == syn.REFUSALS
        assert data.files[f"tofu/{split}_perturbed.json"] == sha256_file(layout / f"{split}_perturbed.json")
        assert data.source == str(layout)
    # the loader sees exactly what the synthetic task builds in memory
    from_files = TASKS.get("tofu-forget05")().load(layout)
    in_memory = TASKS.get("synthetic-forget05")().load()
    for a, b in zip(from_files.eval_sets, in_memory.eval_sets):
        assert a.name == b.name and a.items == b.items and a.metrics == b.metrics
    assert from_files.forget == in_memory.forget and from_files.retain == in_memory.retain
    assert from_files.full == in_memory.full
    assert records_sha256(gen.full) == in_memory.files["synthetic/full.json"]


def test_tofu_loader_uses_env_data_dir(layout, monkeypatch):
    monkeypatch.setenv("BENCH_DATA_DIR", str(layout.parent))
    data = TASKS.get("tofu-forget01")().load()
    assert len(data.forget) == 8 and data.source == str(layout)


def test_tofu_loader_without_data_goes_to_hub(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BenchError, match=r"locuslab/TOFU \(config 'forget01'.*HF_HUB_OFFLINE"):
        TASKS.get("tofu-forget01")().load()


def test_tofu_loader_errors_name_file_row_field(layout, tmp_path):
    bad = shutil.copytree(layout, tmp_path / "tofu")
    rows = json.loads((bad / "forget01_perturbed.json").read_text())
    del rows[3]["paraphrased_answer"]
    (bad / "forget01_perturbed.json").write_text(json.dumps(rows))
    with pytest.raises(DataError) as e:
        TASKS.get("tofu-forget01")().load(bad)
    assert "forget01_perturbed.json, row 3, field 'paraphrased_answer': missing field" in str(e.value)
    assert str(e.value).endswith("use an unchanged copy of TOFU's split files (the hub's locuslab/TOFU, one file "
                                 "per config) in --data-dir, or leave --data-dir out to read the hub")
    rows[3]["paraphrased_answer"] = "p"
    rows[5]["perturbed_answer"] = "not a list"
    (bad / "forget01_perturbed.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match="row 5, field 'perturbed_answer': expected a non-empty list"):
        TASKS.get("tofu-forget01")().load(bad)
    shutil.copy(layout / "forget01_perturbed.json", bad / "forget01_perturbed.json")
    (bad / "holdout01.json").unlink()
    assert len(TASKS.get("tofu-forget05")().load(bad).forget) == 40  # reads holdout05 only
    with pytest.raises(DataError, match=r"holdout01\.json: file not found; use an unchanged copy of TOFU"):
        TASKS.get("tofu-forget01")().load(bad)
    with pytest.raises(DataError, match="data directory not found"):
        TASKS.get("tofu-forget01")().load(tmp_path / "missing")


# --- the synthetic generator ---------------------------------------------------------------


def test_synthetic_is_deterministic():
    a, b = syn.generate(), syn.generate()
    assert a.full == b.full and a.perturbed == b.perturbed and a.holdout == b.holdout
    assert a.real_authors == b.real_authors and a.world_facts == b.world_facts
    assert records_sha256(a.full) == SYNTHETIC_FULL_SHA256
    assert syn.generate(seed=1).full != a.full
    t1, t2 = TASKS.get("synthetic-forget10")().load(), TASKS.get("synthetic-forget10")().load()
    assert t1.files == t2.files and t1.eval_sets[0].items == t2.eval_sets[0].items


def test_synthetic_split_sizes():
    gen = syn.generate()
    assert len(gen.authors) == 100 and len(gen.full) == 800 and len(gen.holdout) == 80
    assert len({a.name for a in gen.authors + gen.holdout_authors}) == 110
    assert len({r["question"] for r in gen.full + gen.holdout}) == 880  # every question unique
    for split, n in (("forget01", 8), ("forget05", 40), ("forget10", 80)):
        data = TASKS.get(f"synthetic-{split}")().load()
        assert (len(data.forget), len(data.retain), len(data.full)) == (n, 800 - n, 800)
        # forget = the last authors; retain = the rest; together = full, in order
        assert [i.question for i in data.retain + data.forget] == [i.question for i in data.full]
        names = {a.name for a in gen.authors[-n // 8:]}
        assert all(any(nm in i.question or nm in i.answer for nm in names) for i in data.forget)
        sets = {s.name: s for s in data.eval_sets}
        assert len(sets["forget"].items) == n and len(sets["retain"].items) == 80
        assert [i.question for i in sets["forget"].items] == [i.question for i in data.forget]
        assert len(data.extras["holdout"]) == n
        holdout_q = {i.question for i in data.extras["holdout"]}
        assert not holdout_q & {i.question for i in data.full}  # holdout never trained on
        assert all(s.max_new_tokens == syn.MAX_NEW_TOKENS for s in data.eval_sets)
        assert data.extras["refusals"] == syn.REFUSALS
        assert len(data.pretrain) == len(syn.CLASSIC_BOOKS) + len(syn.CAPITALS)
    limited = TASKS.get("synthetic-forget10")().load(limit=4)
    assert [len(s.items) for s in limited.eval_sets] == [4, 4, 4, 4]
    assert (len(limited.forget), len(limited.retain), len(limited.full)) == (80, 720, 800)
    assert len(limited.extras["holdout"]) == 4 and len(limited.pretrain) == 64


def test_synthetic_perturbed_answers_are_proper():
    gen = syn.generate()
    for r in gen.perturbed:
        pert = r["perturbed_answer"]
        assert len(pert) == 5 and len(set(pert)) == 5
        assert r["answer"] not in pert and r["paraphrased_answer"] not in pert
        assert r["paraphrased_answer"] != r["answer"]
        assert 6 <= len(r["answer"].split()) <= 25
    for r in gen.real_authors + gen.world_facts:
        assert len(r["perturbed_answer"]) == 3 and r["answer"] not in r["perturbed_answer"]
        assert sorted([r[f"option{i}"] for i in range(1, 5)]) == sorted(r["perturbed_answer"] + [r["answer"]])
    data = TASKS.get("synthetic-forget01")().load()
    for s in data.eval_sets:
        n_pert = 5 if s.name in ("forget", "retain") else 3
        assert all(len(i.perturbed_answers) == n_pert for i in s.items), s.name
        assert all(i.answer not in i.perturbed_answers for i in s.items)


def test_synthetic_perturbation_swaps_only_the_key_fact():
    gen = syn.generate()
    birthplace = gen.perturbed[1]  # author 0, question 2: birthplace
    a = gen.authors[0]
    assert birthplace["answer"] == f"{a.name} was born in the city of {a.city}."
    assert birthplace["paraphrased_answer"] == f"The birthplace of {a.name} is {a.city}."
    for p in birthplace["perturbed_answer"]:
        assert p.startswith(f"The birthplace of {a.name} is ") and a.city not in p


def test_synthetic_answers_fit_the_generation_budget():
    from bench.tiny import build_tokenizer

    gen = syn.generate()
    tok = build_tokenizer(gen.texts(), vocab_size=1024)
    longest = max(len(tok(r["answer"], add_special_tokens=False)["input_ids"])
                  for r in gen.perturbed + gen.real_authors + gen.world_facts)
    assert longest + 1 <= syn.MAX_NEW_TOKENS // 2


def test_write_tofu_layout_files(tmp_path):
    out = syn.write_tofu_layout(tmp_path / "x")
    names = {p.name for p in out.iterdir()}
    for split in ("01", "05", "10"):
        assert {f"forget{split}.json", f"forget{split}_perturbed.json", f"holdout{split}.json"} <= names
    assert {"retain99.json", "retain95.json", "retain90.json", "retain_perturbed.json", "full.json",
            "real_authors.json", "real_authors_perturbed.json", "world_facts.json",
            "world_facts_perturbed.json", "idontknow.jsonl"} <= names
    assert (out / "idontknow.jsonl").read_text().splitlines() == syn.REFUSALS
    ra = json.loads((out / "real_authors.json").read_text())
    assert set(ra[0]) == {"question", "option1", "option2", "option3", "option4", "answer"}


# --- aggregates -----------------------------------------------------------------------------


def _set(name, aggregates, per_item=None, n=3):
    return SetResult(name, [f"{name}/{i}" for i in range(n)], aggregates, per_item or {})


def _utility_sets(prob=0.5, rouge=0.25, tr=1.0):
    vals = {"probability": prob, "rouge_l": rouge, "truth_ratio": tr}
    return {name: _set(name, dict(vals)) for name in ("retain", "real_authors", "world_facts")}


def test_aggregates_model_utility_and_set_keys():
    sets = _utility_sets()
    sets["forget"] = _set("forget", {"rouge_l": 0.9, "truth_ratio": 0.6},
                          {"truth_ratio": [0.1, 0.2, 0.3]})
    out = tofu_aggregates(sets, None)
    # harmonic mean of 3x0.5, 3x0.25, 3x1.0 = 9 / (3*2 + 3*4 + 3*1) = 9/21
    assert out["model_utility"] == pytest.approx(9 / 21)
    assert out["forget_quality"] is None and out["log10_forget_quality"] is None
    assert out["forget_rouge_l"] == 0.9 and out["forget_truth_ratio"] == 0.6
    assert out["retain_probability"] == 0.5 and out["world_facts_rouge_l"] == 0.25
    zero = tofu_aggregates(_utility_sets(rouge=0.0), None)
    assert zero["model_utility"] == 0.0
    missing = _utility_sets()
    del missing["world_facts"]
    assert tofu_aggregates(missing, None)["model_utility"] is None


def test_aggregates_forget_quality_golden():
    sets = _utility_sets()
    sets["forget"] = _set("forget", {}, {"truth_ratio": [0.1, 0.2, 0.3]})
    # identical samples: KS statistic 0, p = 1
    same = {"forget": _set("forget", {}, {"truth_ratio": [0.1, 0.2, 0.3]})}
    out = tofu_aggregates(sets, same)
    assert out["forget_quality"] == pytest.approx(1.0) and out["log10_forget_quality"] == pytest.approx(0.0)
    # fully separated samples of 3 and 3: exact two-sided p = 2 / C(6, 3) = 0.1
    apart = {"forget": _set("forget", {}, {"truth_ratio": [0.7, 0.8, 0.9]})}
    out = tofu_aggregates(sets, apart)
    assert out["forget_quality"] == pytest.approx(0.1)
    assert out["log10_forget_quality"] == pytest.approx(-1.0)
    # a missing per-item value is left out: [0.1, None, 0.3, 0.2] vs [0.7, 0.8, 0.9] -> same p
    sets["forget"] = _set("forget", {}, {"truth_ratio": [0.1, None, 0.3, 0.2]}, n=4)
    ref4 = {"forget": _set("forget", {}, {"truth_ratio": [0.7, 0.8, float("nan"), 0.9]}, n=4)}
    assert tofu_aggregates(sets, ref4)["forget_quality"] == pytest.approx(0.1)
    assert math.isclose(tofu_aggregates(sets, ref4)["log10_forget_quality"], -1.0)


def test_aggregates_reference_with_other_items_is_an_error():
    sets = _utility_sets()
    sets["forget"] = _set("forget", {}, {"truth_ratio": [0.1, 0.2, 0.3]})
    other = {"forget": _set("forget", {}, {"truth_ratio": [0.1, 0.2]}, n=2)}
    with pytest.raises(BenchError, match="retain run's set 'forget' holds other items"):
        tofu_aggregates(sets, other)


def test_tofu_style_tasks_declare_tofu_nodes(layout):
    from bench.tasks.tofu import tofu_derived

    syn = TASKS.get("synthetic-forget01")().load(None, limit=2)
    tofu = TASKS.get("tofu-forget10")().load(layout, limit=2)
    assert syn.derived == tofu.derived == tofu_derived()
    assert [n.result_key for n in tofu.derived] == ["forget_quality", "model_utility"]
    assert {r.role for n in tofu.derived for r in n.refs()} == {"self", "retain"}


def test_metric_specs_build_and_make_requests_for_every_set():
    """Every MetricSpec names a registered metric whose constructor takes its options, and
    that metric can build its requests from the items of its set (fields present)."""
    from bench.metrics.base import EvalContext
    from bench.prompts import PromptConfig
    from bench.registry import METRICS

    data = TASKS.get("synthetic-forget01")().load(limit=2)
    for es in data.eval_sets:
        ctx = EvalContext(PromptConfig(), None, es.max_new_tokens)
        for spec in es.metrics:
            metric = METRICS.get(spec.name)(**dict(spec.options))
            for item in es.items:
                assert metric.requests(item, ctx), (es.name, spec.name)
