"""Robustness attacks: quantization grid and effect, before/after/undone by hand, prompt
attacks change prompts only, relearning brings an unlearned tiny model's answers back,
options checked like --set, and the run stage end to end on a tiny model."""

from __future__ import annotations

import copy
import json

import pytest

from bench.attacks.base import AttackContext, compare, plan_attacks, restrict, undone_median
from bench.errors import BenchError
from bench.items import EvalSet, Item, MetricSpec, TaskData

# --------------------------------------------------------------------------- quantization


def test_rtn_grid_by_hand_asymmetric_symmetric_and_groups():
    import torch

    from bench.attacks.quant import rtn_dequantize, rtn_grid

    w = torch.tensor([[-1.0, 0.6, 0.2, 2.0]])
    # 2 bits, one group (per output channel): xmin -1, xmax 2, scale 1, zero 1
    q, scale, zero = rtn_grid(w, 2)
    assert q.tolist() == [[0, 2, 1, 3]] and scale[0, 0].item() == 1.0 and zero[0, 0].item() == 1.0
    assert rtn_dequantize(w, 2).tolist() == [[-1.0, 1.0, 0.0, 2.0]]
    # symmetric: xmax 2, scale 4/3, zero 2; 2/(4/3)=1.5 rounds to 2 -> level 4 clamped to 3
    got = rtn_dequantize(w, 2, symmetric=True)[0].tolist()
    assert got == pytest.approx([-4 / 3, 0.0, 0.0, 4 / 3])
    # groups of 2 columns: [-1, .6] -> scale 1.6/3, zero round(1.875)=2; [.2, 2] -> xmin clamps to 0
    got = rtn_dequantize(w, 2, group_size=2)[0].tolist()
    s1 = 1.6 / 3
    assert got == pytest.approx([s1 * (0 - 2), s1 * (3 - 2), 0.0, 2.0], abs=1e-6)
    # a group of zeros stays zero (GPTQ's guard), a short last group is its own group
    z = torch.tensor([[0.0, 0.0, 0.0, 1.0, -1.0]])
    assert rtn_dequantize(z, 4, group_size=3)[0, :3].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        rtn_grid(w, 1)


def _copy(bundle):
    from bench.model_bundle import ModelBundle

    return ModelBundle(copy.deepcopy(bundle.module), bundle.tokenizer, bundle.prompt, bundle.name)


@pytest.fixture
def lively(tiny_bundle, liven):
    b = _copy(tiny_bundle)
    liven(b.module, 3)
    return b


@pytest.mark.parametrize("bits,group", [(4, 16), (8, 0), (4, 0)])
def test_quantized_weights_differ_and_lie_on_the_grid(lively, bits, group):
    import torch

    from bench.attacks.quant import Quant4, Quant8, linear_weights, rtn_grid

    before = {n: w.detach().clone() for n, w, _ in linear_weights(lively.module)}
    emb = lively.module.get_input_embeddings().weight.detach().clone()
    attacked = (Quant4 if bits == 4 else Quant8)(group_size=group).apply(
        _copy(lively), AttackContext(TaskData([], [], [], []), [], log=lambda s: None))
    after = dict((n, w.detach()) for n, w, _ in linear_weights(attacked.module))
    assert set(after) == set(before) and len(after) >= 7  # q k v o gate up down per layer
    assert "lm_head" not in after  # tied with the embedding: left out by default
    assert torch.equal(attacked.module.get_input_embeddings().weight, emb)
    for name, w0 in before.items():
        w1 = after[name]
        assert not torch.equal(w0, w1), name
        q, scale, zero = rtn_grid(w0, bits, group)
        assert torch.allclose(w1, scale * (q - zero), atol=1e-6), name
        assert (w1 - w0).abs().le(scale / 2 + 1e-6).all(), name  # round to nearest
        g = w0.shape[1] if group == 0 else group
        for r in range(0, w0.shape[0], 7):
            for c in range(0, w0.shape[1], g):
                vals = w1[r, c:c + g]
                assert torch.unique(vals).numel() <= 2 ** bits
                step = scale[r, c]
                levels = (vals - vals.min()) / step
                assert torch.allclose(levels, levels.round(), atol=1e-3)
    if bits == 8:  # 8 bits moves weights much less than 4 bits
        assert max(abs(after[n] - before[n]).max().item() for n in before) < 0.01


def test_quantized_model_outputs_and_cache_keys_change(lively):
    import torch

    from bench.attacks.quant import Quant4
    from bench.backends.cache import cache_key
    from bench.evaluate import plan

    ids = torch.tensor([lively.tokenizer("Who wrote the book?")["input_ids"]])
    base = lively.module(input_ids=ids).logits
    attacked = Quant4(group_size=32).apply(_copy(lively), AttackContext(TaskData([], [], [], []), [], log=print))
    out = attacked.module(input_ids=ids).logits
    assert (out - base).abs().max().item() > 1e-3
    es = EvalSet("forget", [Item("f/0", "Who wrote the book?", "Basil Mahfouz.")], [MetricSpec("probability")],
                 role="forget")
    r0, r1 = plan(lively, [es]).requests, plan(attacked, [es]).requests
    assert r0 == r1  # same requests ...
    fp0, fp1 = lively.fingerprint(), attacked.fingerprint()
    assert fp0 != fp1  # ... another model, so other cache keys
    assert cache_key(fp0, {}, r0[0]) != cache_key(fp1, {}, r1[0])


def test_bnb_engine_is_a_one_line_error_on_cpu():
    data = TaskData([], [], [], [EvalSet("forget", [Item("a", "q", "a")], [], role="forget")])
    with pytest.raises(BenchError, match="engine=bnb needs") as e:
        plan_attacks(["quant-4bit"], {"engine": "bnb"}, data, data.eval_sets)
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- comparison


def test_compare_recovery_and_undone_by_hand():
    before = {"p": 0.2, "tr": 0.9, "flat": 0.5, "gone": None}
    after = {"p": 0.5, "tr": 0.6, "flat": 0.7, "gone": 0.1}
    target = {"p": 0.8, "tr": 0.3, "flat": 0.5}
    m = compare(before, after, target, ["p", "tr", "flat", "gone"])
    assert m["p"]["recovery"] == pytest.approx(0.3) and m["p"]["undone"] == pytest.approx(0.5)
    # a metric that unlearning raised: the share is direction-free
    assert m["tr"]["recovery"] == pytest.approx(-0.3) and m["tr"]["undone"] == pytest.approx(0.5)
    assert m["flat"]["undone"] is None  # the unlearning did not move it: nothing to undo
    assert m["gone"]["recovery"] is None and m["gone"]["undone"] is None
    assert compare(before, after, None, ["p"])["p"]["undone"] is None
    overshoot = compare({"p": 0.2}, {"p": 1.0}, {"p": 0.6}, ["p"])["p"]["undone"]
    assert overshoot == pytest.approx(2.0)
    assert undone_median(m, ["p", "tr", "flat"]) == pytest.approx(0.5)
    assert undone_median(m, ["flat"]) is None
    # the median: one barely-moved metric with a huge share does not decide alone (mean would be 3.4)
    m3 = compare({"a": 0.0, "b": 0.0, "c": 0.60}, {"a": 0.1, "b": 0.2, "c": 0.70}, {"a": 1.0, "b": 1.0, "c": 0.61},
                 ["a", "b", "c"])
    assert m3["c"]["undone"] == pytest.approx(10.0) and undone_median(m3, ["a", "b", "c"]) == pytest.approx(0.2)


def test_restrict_reaggregates_each_metric_on_the_kept_items():
    from bench.graph import Results
    from bench.task import SetResult

    es = EvalSet("forget", [Item(f"f/{i}", "q", "a") for i in range(4)],
                 [MetricSpec("probability"), MetricSpec("truth_ratio", {"mode": "forget"})], role="forget")
    r = SetResult("forget", [f"f/{i}" for i in range(4)],
                  {"probability": 0.25, "truth_ratio": 0.0},
                  {"probability": [0.1, 0.2, 0.3, 0.4], "truth_ratio": [0.5, 2.0, 4.0, 1.0]})
    kept = EvalSet("forget", [es.items[3], es.items[1]], es.metrics, role="forget")
    cut = restrict(Results({"forget": r}), [kept]).sets["forget"]
    assert cut.item_ids == ["f/3", "f/1"]
    assert cut.aggregates["probability"] == pytest.approx(0.3)
    # TOFU's forget truth ratio aggregates mean(min(R, 1/R)): (1 + 0.5) / 2
    assert cut.aggregates["truth_ratio"] == pytest.approx(0.75)
    assert restrict(Results({"forget": r}), [es]).sets["forget"] is r  # same items: unchanged


# --------------------------------------------------------------------------- prompt attacks


def _para_set() -> EvalSet:
    items = [Item(f"forget/{i}", f"Where was author {i} born?", f"Author {i} was born in Oslo.",
                  paraphrased_answer=f"Oslo is where author {i} was born.",
                  perturbed_answers=(f"Author {i} was born in Rome.",),
                  meta={"paraphrased_question": f"In which city was author {i} born?"}) for i in range(3)]
    items.append(Item("forget/3", "Who is author 3?", "A writer.", paraphrased_answer="A novelist.",
                      perturbed_answers=("A baker.",)))  # no paraphrased question
    return EvalSet("forget", items, [MetricSpec("probability"), MetricSpec("rouge_l"),
                                     MetricSpec("truth_ratio", {"mode": "forget"})],
                   role="forget", max_new_tokens=8)


def _fields(r) -> dict:
    from dataclasses import asdict

    d = asdict(r)
    d.pop("prompt", None)
    return d


@pytest.mark.parametrize("position", ["append", "prepend"])
def test_prefix_changes_the_prompts_and_nothing_else(tiny_bundle, position):
    from bench.attacks.prefix import Prefix
    from bench.evaluate import plan

    es = _para_set()
    att = Prefix(position=position)
    ctx = AttackContext(TaskData([], [], [], [es]), [es], log=print)
    bundle = att.apply(tiny_bundle, ctx)
    es2 = att.transform(es, ctx)
    assert bundle.module is tiny_bundle.module  # same weights
    r0, r1 = plan(tiny_bundle, [es]).requests, plan(bundle, [es2]).requests
    assert len(r0) == len(r1) and [type(a) for a in r0] == [type(b) for b in r1]
    for a, b in zip(r0, r1):
        assert _fields(a) == _fields(b)  # continuations, budgets, stops: identical
        assert a.prompt != b.prompt and "Sure, here is the answer:" in b.prompt
        if position == "append":
            assert b.prompt == a.prompt + " Sure, here is the answer:"
        else:
            assert b.prompt.replace("Sure, here is the answer: ", "") == a.prompt
    assert [(it.id, it.answer, it.paraphrased_answer, it.perturbed_answers) for it in es2.items] == [
        (it.id, it.answer, it.paraphrased_answer, it.perturbed_answers) for it in es.items]
    assert bundle.fingerprint() != tiny_bundle.fingerprint() or position == "prepend"


def test_prefix_on_raw_sets_appends_to_the_question_and_skips_documents(tiny_bundle):
    from bench.attacks.prefix import Prefix

    raw = EvalSet("mc", [Item("m/0", "Q: 2+2?\nA:", " 4")], [MetricSpec("probability")], format="raw")
    doc = EvalSet("doc", [Item("d/0", "", "Some text.")], [MetricSpec("probability")], format="document")
    att = Prefix(text="Sure:")
    ctx = AttackContext(TaskData([], [], [], []), [raw, doc], log=print)
    assert att.transform(raw, ctx).items[0].question == "Q: 2+2?\nA: Sure:"
    assert att.transform(doc, ctx) is doc and att.info["skipped_sets"] == ["doc"]


def test_paraphrase_asks_the_paraphrased_question_and_nothing_else(tiny_bundle):
    from bench.attacks.paraphrase import Paraphrase
    from bench.evaluate import plan

    es = _para_set()
    att = Paraphrase()
    ctx = AttackContext(TaskData([], [], [], [es]), [es], log=print)
    es2 = att.transform(es, ctx)
    assert att.apply(tiny_bundle, ctx) is tiny_bundle
    assert [it.question for it in es2.items] == [f"In which city was author {i} born?" for i in range(3)] + [
        "Who is author 3?"]
    assert att.info["paraphrased"]["forget"] == {"items": 4, "paraphrased": 3}
    r0, r1 = plan(tiny_bundle, [es]).requests, plan(tiny_bundle, [es2]).requests
    assert [_fields(a) for a in r0] == [_fields(b) for b in r1]
    changed = [a.prompt != b.prompt for a, b in zip(r0, r1)]
    assert len(r0) == 16 and changed == [True] * 12 + [False] * 4  # item 3 has no paraphrase
    data = TaskData([], [], [], [EvalSet("forget", [Item("a", "q", "a")], [], role="forget")])
    with pytest.raises(BenchError, match="no item of the re-evaluated sets"):
        plan_attacks(["paraphrase"], {}, data, data.eval_sets)


# --------------------------------------------------------------------------- relearning


def _qa(n: int, offset: int = 0) -> list[Item]:
    from bench.tasks.synthetic import generate

    rows = generate(0, n_authors=4, n_holdout=0).full
    return [Item(f"forget/{i}", r["question"], r["answer"]) for i, r in enumerate(rows[offset:offset + n])]


def _probability(bundle, items) -> float:
    from bench.backends.cache import AnsweringLayer
    from bench.backends.hf import HFBackend
    from bench.evaluate import evaluate

    es = EvalSet("forget", list(items), [MetricSpec("probability")], role="forget")
    layer = AnsweringLayer(HFBackend(bundle), bundle.fingerprint(), None)
    sets, _ = evaluate(bundle, [es], layer)
    layer.close()
    return sets["forget"].aggregates["probability"]


def test_relearning_raises_the_forget_probability_of_an_unlearned_tiny_model():
    from bench.model_bundle import ModelBundle
    from bench.prompts import from_tokenizer
    from bench.tiny import build_model, build_tokenizer
    from bench.training import finetune, token_mean_nll, train

    items = _qa(16)
    tok = build_tokenizer([t for it in items for t in (it.question, it.answer)], vocab_size=400)
    bundle = ModelBundle(build_model(tok, seed=0), tok, from_tokenizer(tok, style="plain"), "tiny")
    finetune(bundle, items, epochs=30, lr=5e-3, batch_size=16, seed=0, progress=False)
    learned = _probability(bundle, items)
    train(bundle, lambda m, b: -token_mean_nll(m, b["forget"]), {"forget": items}, epochs=4, lr=1e-3,
          batch_size=8, grad_accum=1, warmup_epochs=0, progress=False)  # gradient ascent
    es = EvalSet("forget", items, [MetricSpec("probability")], role="forget")
    data = TaskData(forget=items, retain=[], full=items, eval_sets=[es])
    [pa] = plan_attacks(["relearn"], {"steps": "10", "lr": "1e-3", "n_items": "8"}, data, [es])
    ctx = AttackContext(data, [es], seed=0, log=lambda s: None)
    kept = pa.attack.transform(es, ctx)  # before apply: the same slice is chosen again
    held = kept.items
    assert len(held) == 8 and pa.attack.info["held_out"] == {"forget": 8}
    unlearned = _probability(bundle, held)
    assert unlearned < 0.5 * learned, (learned, unlearned)
    pa.attack.apply(bundle, ctx)
    info = pa.attack.info
    assert info["items"] == 8 and info["optimizer_steps"] == 10 and info["exact_steps"]
    assert not set(info["item_ids"]) & {it.id for it in held}  # evaluated items never trained on
    relearned = _probability(bundle, held)
    assert relearned > 2 * unlearned, (learned, unlearned, relearned)


def test_relearn_slice_prefers_items_nobody_asks():
    from bench.attacks.relearn import Relearn

    forget = _qa(12)
    es = EvalSet("forget", forget[:4], [MetricSpec("probability")], role="forget")
    data = TaskData(forget=forget, retain=[], full=forget, eval_sets=[es])
    att = Relearn(n_items=6, seed=1)
    _, picked, _, covered = att.choose(data, [es])
    assert len(picked) == 6 and not covered & {it.question for it in es.items}
    att2 = Relearn(n_items=20, seed=1)  # 8 fresh + at most half of the 4 asked ones
    _, picked2, _, _ = att2.choose(data, [es])
    assert len(picked2) == 10
    kept = att2.transform(es, AttackContext(data, [es], log=print))
    assert len(kept.items) == 2
    with pytest.raises(BenchError, match="data='nope' is not a split"):
        Relearn(data="nope").check(data, [es])


# --------------------------------------------------------------------------- options and CLI


def test_attack_options_are_typed_checked_and_distributed():
    data = TaskData(_para_set().items, [], [], [_para_set(), EvalSet("retain", [Item("r", "q", "a")], [])])
    pas = plan_attacks(["quant-4bit", "relearn"], {"group_size": "64", "relearn.steps": "3", "scope": "all",
                                                   "seed": "5"}, data, data.eval_sets, {"lr": 1e-3, "seed": 0})
    q, r = pas
    assert q.options["group_size"] == 64 and q.options["bits"] == 4 and q.scope == "all"
    assert r.options["steps"] == 3 and r.options["lr"] == 1e-3 and r.options["seed"] == 5
    assert r.record()["scope"] == "all"
    cases = [
        ({"group_sise": "8"}, "no selected attack has option 'group_sise'.*did you mean 'group_size'"),
        ({"group_size": "x"}, "quant-4bit.*group_size='x'.*integer"),
        ({"prefix.text": "x"}, "attack 'prefix' is not selected"),
        ({"scope": "most"}, "scope='most'"),
        ({"group_size": "-1"}, "group_size must be >= 0"),
    ]
    for raw, msg in cases:
        with pytest.raises(BenchError, match=msg):
            plan_attacks(["quant-4bit"], raw, data, data.eval_sets)
    with pytest.raises(BenchError, match="unknown attack 'quant-3bit'.*quant-4bit"):
        plan_attacks(["quant-3bit"], {}, data, data.eval_sets)
    with pytest.raises(BenchError, match="given twice"):
        plan_attacks(["prefix", "prefix"], {}, data, data.eval_sets)


def test_cli_attack_errors_are_one_line_and_list_shows_options(capsys):
    from bench.cli import main

    rc = main(["run", "--task", "synthetic-forget01", "--method", "none", "--attack", "quant-4bit",
               "--attack-set", "bits=3"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "no selected attack has option 'bits'" in err
    rc = main(["run", "--task", "synthetic-forget01", "--method", "none", "--attack-set", "steps=3"])
    assert rc == 2 and "without --attack" in capsys.readouterr().err
    assert main(["list", "attacks"]) == 0
    out = capsys.readouterr().out
    for name in ("quant-4bit", "quant-8bit", "relearn", "prefix", "paraphrase"):
        assert name in out
    assert "group_size: int = 128" in out and "lr: float = 1e-05" in out and "scope:" in out


# --------------------------------------------------------------------------- the run stage


def test_run_stage_records_before_after_through_the_answering_path(tmp_path, tiny_dir, monkeypatch):
    from bench.report import attack_tables
    from bench.run import RunSpec, run

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    base = dict(task="synthetic-forget01", method="none", model=str(tiny_dir), as_is=True, limit=2,
                out=str(tmp_path / "runs"))
    plain = run(RunSpec(**base), log=lambda s: None)
    logs: list[str] = []
    d = run(RunSpec(**base, attacks=["quant-4bit", "prefix", "relearn"],
                    attack_options={"group_size": "16", "relearn.lr": "1e-2"}), log=logs.append)
    assert d != plain  # attacks are part of the run's hash; a run without them keeps its own
    res = json.loads((d / "results.json").read_text())
    assert json.loads((plain / "results.json").read_text())["aggregates"] == res["aggregates"]
    att = res["attacks"]
    assert list(att) == ["quant-4bit", "prefix", "relearn"]
    q = att["quant-4bit"]
    assert q["sets"] == ["forget"] and q["options"]["group_size"] == 16 and q["options"]["scope"] == "forget"
    assert q["model_fingerprint"] != q["base_fingerprint"] == res["model_identity"]["fingerprint"]
    for key in ("forget_probability", "forget_rouge_l", "forget_truth_ratio"):
        m = q["metrics"][key]
        assert m["before"] == pytest.approx(res["aggregates"][key])  # all items: the run's own numbers
        assert m["recovery"] == pytest.approx(m["after"] - m["before"])
        assert m["undone"] is None and m["target"] is None  # --as-is: no target run
    assert q["metrics"]["forget_probability"]["after"] != q["metrics"]["forget_probability"]["before"]
    # the attacked model's requests were computed, not read from the first evaluation's cache
    stats = q["request_stats"]
    assert sum(v.get("computed", 0) for v in stats.values()) > 0
    assert sum(v.get("hits", 0) for v in stats.values()) == 0
    assert att["prefix"]["kind"] == "prompt" and att["prefix"]["model_fingerprint"] != q["base_fingerprint"]
    r = att["relearn"]
    # limit 2 caps the evaluated items only: the slice takes the 6 forget items no set asks,
    # plus one of the two asked (then held out of evaluation), so one is evaluated
    assert r["items"] == {"forget": 1} and r["info"]["items"] == 7
    # before re-aggregated on the one item left: that item's value in the plain run
    [kept] = {json.loads(x)["id"] for x in (d / "attacks" / "relearn.samples.jsonl").read_text().splitlines()}
    forget = res["sets"]["forget"]
    value = forget["per_item"]["probability"][forget["item_ids"].index(kept)]
    assert r["metrics"]["forget_probability"]["before"] == pytest.approx(value)
    assert r["info"]["optimizer_steps"] == 10 and r["options"]["lr"] == 1e-2
    assert res["timings"]["attacks_s"] > 0 and all(a["timings"]["answer_s"] > 0 for a in att.values())
    assert (d / "attacks" / "quant-4bit.samples.jsonl").exists()
    assert "model_utility" not in q["metrics"]  # the retain sets were not re-evaluated
    table = attack_tables(res)
    assert "attack quant-4bit" in table and "forget_probability" in table and "no target run" in table
    from bench.report import write_report

    _, md, _ = write_report([d], tmp_path / "report")
    text = md.read_text()
    assert "## Attacks: synthetic-forget01 / none" in text and "| forget_probability |" in text
    # resumable: a rerun with --overwrite recomputes; a finished run is skipped
    assert run(RunSpec(**base, attacks=["quant-4bit", "prefix", "relearn"],
                       attack_options={"group_size": "16", "relearn.lr": "1e-2"}), log=logs.append) == d
    assert any("already finished" in x for x in logs)


def test_undone_uses_the_target_run_on_the_same_items(tmp_path, tiny_dir, monkeypatch, liven):
    """A fixed case: the 'unlearned' model is the target with its weights scaled; quantizing
    with the target's numbers known gives undone = (after - before) / (target - before)."""
    from bench.models import load_bundle, save_bundle
    from bench.run import Models, RunSpec, attack_step, plan_attack_stage, plan_run, run

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    base = dict(task="synthetic-forget01", method="none", as_is=True, limit=2, out=str(tmp_path / "runs"))
    target_run = run(RunSpec(**base, model=str(tiny_dir)), log=lambda s: None)
    b = load_bundle(tiny_dir)
    liven(b.module, 11)
    other = tmp_path / "unlearned"
    save_bundle(b, other)
    me = run(RunSpec(**base, model=str(other)), log=lambda s: None)
    spec = RunSpec(**base, model=str(other), attacks=["quant-4bit"], attack_options={"group_size": "8"})
    rp = plan_run(spec, lambda s: None)
    attacks = plan_attack_stage(rp)
    res = json.loads((me / "results.json").read_text())
    row = {**res["steps"][0], "sets": res["sets"]}
    out = attack_step(rp, attacks, Models(other, None, {"target": target_run}), tmp_path / "x", [row],
                      res["config"]["prompt"], lambda s: None)
    tgt = json.loads((target_run / "results.json").read_text())["aggregates"]
    for key, m in out["quant-4bit"]["metrics"].items():
        if not key.startswith("forget_"):
            continue
        assert m["target"] == pytest.approx(tgt[key])
        assert m["before"] == pytest.approx(res["aggregates"][key])
        if abs(m["target"] - m["before"]) >= 1e-6:
            assert m["undone"] == pytest.approx((m["after"] - m["before"]) / (m["target"] - m["before"]))
    assert out["quant-4bit"]["target_known"]
    assert out["quant-4bit"]["undone_median"] is not None


def test_report_marks_forgetting_undone_at_the_threshold():
    from bench.attacks.base import UNDONE_THRESHOLD
    from bench.report import attack_table

    def rec(mean):
        m = compare({"forget_probability": 0.1}, {"forget_probability": 0.1 + 0.8 * mean},
                    {"forget_probability": 0.9}, ["forget_probability"])
        return {"kind": "model", "sets": ["forget"], "metrics": m, "undone_median": mean,
                "undone": mean >= UNDONE_THRESHOLD, "undone_threshold": UNDONE_THRESHOLD,
                "target_known": True, "options": {"bits": 4}, "timings": {"answer_s": 1.5}}

    assert UNDONE_THRESHOLD == 0.5
    hi, lo = attack_table("quant-4bit", rec(0.5)), attack_table("quant-4bit", rec(0.49))
    assert "FORGETTING UNDONE" in hi and "FORGETTING UNDONE" not in lo
    assert "0.9000" in hi and "0.5000" in hi  # target and undone columns
    md = attack_table("quant-4bit", rec(0.75), markdown=True)
    assert md.splitlines()[2] == "| metric | before | after | recovery | target | undone |"
