"""--prepare-limit / --prepare-set: which items the quick prepared models see, and the
fine-tuning settings they use (checked before any model is built)."""

from __future__ import annotations

import pytest

from bench.cli import _spec, build_parser
from bench.errors import BenchError
from bench.items import Item, Split, TaskData, split_format
from bench.models import ALIASES
from bench.run import finetune_settings, prepare_overrides, prepare_splits


def _data() -> TaskData:
    forget = [Item(f"f{i}", f"fq{i}", f"fa{i}") for i in range(3)]
    retain = [Item(f"r{i}", f"rq{i}", f"ra{i}") for i in range(5)]
    full = [Item(f"full{i}", f"q{i}", f"a{i}") for i in range(8)]
    return TaskData(forget=forget, retain=retain, full=full, eval_sets=[])


def test_prepare_splits():
    d = _data()
    assert prepare_splits(d, None) == (d.full, list(d.retain))
    target, retain = prepare_splits(d, 2)
    assert [it.id for it in retain] == ["r0", "r1"]
    assert [it.id for it in target] == ["f0", "f1", "f2", "r0", "r1"]  # every forget item + the same N
    assert prepare_splits(d, 99)[1] == list(d.retain)
    # formats are kept: a document corpus stays documents
    d.full, d.retain = Split(d.full, format="document"), Split(d.retain, format="document")
    t, r = prepare_splits(d, 2)
    assert split_format(t) == split_format(r) == "document"
    assert prepare_splits(d, None)[0] is d.full


def test_prepare_overrides_are_typed_and_checked():
    assert finetune_settings(ALIASES["smollm2-135m"]) == {"epochs": 5, "lr": 1e-5, "batch_size": 8}
    got = prepare_overrides({"epochs": "2", "lr": "1e-4"})
    assert got == {"epochs": 2, "lr": 1e-4} and isinstance(got["epochs"], int)
    assert prepare_overrides({}) == {} == prepare_overrides(None)
    with pytest.raises(BenchError, match="no option 'epoch'.*epochs"):
        prepare_overrides({"epoch": "2"})
    with pytest.raises(BenchError, match="'seed' is fixed"):
        prepare_overrides({"seed": "1"})
    with pytest.raises(BenchError, match="epochs='x'"):
        prepare_overrides({"epochs": "x"})
    # the shared training options that make sense for a target's fine-tuning, typed
    assert prepare_overrides({"max_steps": "600", "lora_r": "8"}) == {"max_steps": 600, "lora_r": 8}
    with pytest.raises(BenchError, match="no option 'early_stop_patience'"):
        prepare_overrides({"early_stop_patience": "2"})


def test_cli_carries_the_options():
    args = build_parser().parse_args(["run", "--task", "tofu-forget01", "--method", "ga", "--prepare-limit", "40",
                                      "--prepare-set", "epochs=2", "--prepare-set", "lr=1e-4"])
    spec = _spec(args, args.method)
    assert spec.prepare_limit == 40 and spec.prepare_options == {"epochs": "2", "lr": "1e-4"}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["prepare", "--task", "t", "--prepare-limit", "0"])


def test_bad_prepare_set_fails_before_any_model(tmp_path):
    from bench.run import RunSpec, plan_run

    spec = RunSpec(task="synthetic-forget01", method="none", model="smollm2-135m", out=str(tmp_path),
                   prepare_options={"epochz": "1"})
    with pytest.raises(BenchError, match="epochz"):
        plan_run(spec, log=lambda s: None)


def test_a_step_budget_turns_into_fewer_epochs_for_a_larger_task():
    from bench.models import TINY_FINETUNE
    from bench.run import split_settings

    ft = finetune_settings(ALIASES["tiny"])
    assert dict(TINY_FINETUNE)["step_budget"] == 600 and ft["batch_size"] == 32
    # synthetic-forget10's target: 27 steps an epoch, 20 epochs fit the budget
    assert split_settings(ft, 864)["epochs"] == 20 and "step_budget" not in split_settings(ft, 864)
    # TOFU's: 132 steps an epoch, 600 / 132 = 4.55 -> 5 epochs
    assert split_settings(ft, 4217)["epochs"] == 5
    assert split_settings({**ft, "grad_accum": 2}, 4217)["epochs"] == 9  # 66 steps an epoch
    assert split_settings({**ft, "step_budget": 1}, 4217)["epochs"] == 1  # at least one epoch
    assert split_settings({**ft, "step_budget": None}, 4217)["epochs"] == 20
    assert prepare_overrides({"step_budget": "none"}) == {"step_budget": None}


def test_prepare_says_whether_the_target_memorised_its_forget_set(tmp_path):
    import json

    from bench.run import memorisation_line

    def run(name, rouge):
        d = tmp_path / name
        d.mkdir()
        (d / "results.json").write_text(json.dumps({"aggregates": {"forget_rouge_l": rouge}}))
        return d

    ok = memorisation_line(run("t1", 0.977), run("r1", 0.745))
    assert ok == "prepare: forget ROUGE-L 0.977 for the target vs 0.745 for the retain-only model"
    weak = memorisation_line(run("t2", 0.14), run("r2", 0.131))
    assert weak.startswith("prepare: forget ROUGE-L 0.140 for the target vs 0.131") and "barely memorised" in weak
    # the other way round (retain-only above the target) is no memorisation either
    assert "barely" in memorisation_line(run("t3", 0.3), run("r3", 0.5))
    assert memorisation_line(run("t4", None), run("r4", 0.5)) is None  # a task without the aggregate
    assert memorisation_line(tmp_path / "missing", run("r5", 0.5)) is None
