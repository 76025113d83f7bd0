"""Method adapters (ga, gd, npo, npo-gd, none) and option parsing / user adapter loading."""

from __future__ import annotations

import copy
import math
import textwrap
from typing import Literal

import pytest
import torch

from bench.adapters import (
    REQUIRED,
    bind_options,
    effective_options,
    method_options,
    parse_options,
    resolve_method,
    split_assignments,
    type_name,
)
from bench.errors import BenchError
from bench.items import Item
from bench.model_bundle import ModelBundle
from bench.registry import METHODS
from bench.training import TOFU, batch_nll, collate, encode_pairs, finetune, pad_id

FORGET = [
    Item("f0", "Who wrote the book?", "The book was written by Basil Mahfouz."),
    Item("f1", "Where was the author born?", "The author was born in Kuwait City."),
    Item("f2", "Who is the lazy author?", "The lazy author is Basil."),
]
RETAIN = [
    Item("r0", "What is the capital of France?", "Paris is the capital of France."),
    Item("r1", "Who jumps over the lazy dog?", "The quick brown fox jumps."),
    Item("r2", "What are the digits?", "0123456789"),
    Item("r3", "Where is Paris?", "Paris is in France."),
]
FAST = dict(epochs=3, lr=2e-3, batch_size=2, grad_accum=1, warmup_epochs=0.0, max_length=64, seed=0)


@pytest.fixture(scope="module")
def trained(tiny_bundle) -> ModelBundle:
    """The tiny model fine-tuned on forget + retain (the 'target' model to unlearn)."""
    b = ModelBundle(copy.deepcopy(tiny_bundle.module), tiny_bundle.tokenizer, tiny_bundle.prompt, "t")
    finetune(b, FORGET + RETAIN, epochs=40, lr=5e-3, batch_size=1, max_length=64, seed=0)
    return b


def fresh(b: ModelBundle) -> ModelBundle:
    return ModelBundle(copy.deepcopy(b.module), b.tokenizer, b.prompt, b.name)


def run_method(name: str, b: ModelBundle, **flat):
    """A registered method called with flat options, as `bench run` calls it."""
    fn = METHODS.get(name)
    return fn(b, FORGET, RETAIN, **bind_options(fn, flat))


def mean_nll(b: ModelBundle, items) -> float:
    batch = collate(encode_pairs(b, items, 64), pad_id(b.tokenizer))
    with torch.no_grad():
        return batch_nll(b.module, batch, "mean").mean().item()


# ----------------------------------------------------------------------------- registry


def test_registered_methods_and_none(trained):
    for name in ("ga", "gd", "npo", "npo-gd", "none"):
        assert name in METHODS
    assert METHODS.get("none")(trained, FORGET, RETAIN) is trained


def test_shared_defaults_exposed_in_signatures():
    for name in ("ga", "gd", "npo", "npo-gd"):
        opts = method_options(METHODS.get(name))
        assert opts["lr"] == (float, TOFU.lr) and opts["epochs"] == (int, TOFU.epochs)
        assert opts["batch_size"] == (int, 8) and opts["grad_accum"] == (int, 4)
        assert opts["weight_decay"] == (float, 0.01) and opts["warmup_epochs"] == (float, 1.0)
        assert opts["max_length"] == (int, 512) and opts["seed"] == (int, 0)
    assert method_options(METHODS.get("gd"))["alpha"] == (float, 1.0)
    assert method_options(METHODS.get("npo"))["beta"] == (float, 0.1)
    assert "alpha" not in method_options(METHODS.get("npo"))
    assert method_options(METHODS.get("npo-gd"))["alpha"] == (float, 1.0)
    assert method_options(METHODS.get("none")) == {}


# ----------------------------------------------------------------------------- NPO loss


def test_npo_loss_hand_formula():
    from bench.methods.npo import npo_loss

    beta = 0.1
    logp = torch.tensor([-3.0, -10.0])
    ref = torch.tensor([-5.0, -4.0])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    want = -(2 / beta) * (math.log(sig(-beta * 2.0)) + math.log(sig(-beta * -6.0))) / 2
    assert npo_loss(logp, ref, beta).item() == pytest.approx(want, rel=1e-6)
    assert npo_loss(ref, ref, beta).item() == pytest.approx(2 / beta * math.log(2), rel=1e-6)
    assert npo_loss(ref, ref, 0.5).item() == pytest.approx(4 * math.log(2), rel=1e-6)


def test_npo_first_step_is_at_reference(trained):
    b = fresh(trained)
    run_method("npo", b, **{**FAST, "epochs": 1})
    first = b.provenance["training"][-1]["losses"][0]
    assert first == pytest.approx(2 / 0.1 * math.log(2), abs=1e-4)


# ----------------------------------------------------------------------------- behaviour


def test_ga_increases_forget_nll_in_place(trained):
    b = fresh(trained)
    before = mean_nll(b, FORGET)
    out = run_method("ga", b, **FAST)
    assert out is b and not b.module.training
    assert mean_nll(b, FORGET) > before + 1.0
    assert mean_nll(trained, FORGET) == pytest.approx(before)  # the source copy is untouched


@pytest.mark.parametrize("method", ["gd", "npo-gd"])
def test_retain_term_keeps_retain_nll_below_ga(trained, method):
    ga = run_method("ga", fresh(trained), **FAST)
    other = run_method(method, fresh(trained), **FAST)
    assert mean_nll(other, RETAIN) < mean_nll(ga, RETAIN)
    assert mean_nll(other, FORGET) > mean_nll(trained, FORGET)


def test_npo_increases_forget_nll(trained):
    b = run_method("npo", fresh(trained), **FAST)
    assert mean_nll(b, FORGET) > mean_nll(trained, FORGET) + 0.5


def test_method_is_deterministic(trained):
    a = run_method("gd", fresh(trained), **{**FAST, "seed": 3}).module.state_dict()
    b = run_method("gd", fresh(trained), **{**FAST, "seed": 3}).module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- options


def sample(model, forget, retain, *, lr: float = 1e-5, epochs: int = 10, flag: bool = False,
           name: str = "x", mode: Literal["sum", "mean"] = "sum", cap: float | None = None,
           must: int):
    return model


def test_method_options_types_and_defaults():
    opts = method_options(sample)
    assert list(opts) == ["lr", "epochs", "flag", "name", "mode", "cap", "must"]
    assert opts["lr"] == (float, 1e-5) and opts["flag"] == (bool, False)
    assert opts["must"] == (int, REQUIRED)
    assert type_name(opts["mode"][0]) == "'sum' | 'mean'"
    assert type_name(opts["cap"][0]) == "float | None"


def test_parse_options_converts():
    got = parse_options(sample, {"lr": "2e-5", "epochs": "3", "flag": "TRUE", "name": "abc",
                                 "mode": "mean", "cap": "none", "must": "4"})
    assert got == {"lr": 2e-5, "epochs": 3, "flag": True, "name": "abc", "mode": "mean",
                   "cap": None, "must": 4}
    assert parse_options(sample, {"flag": "0", "cap": "1.5"}) == {"flag": False, "cap": 1.5}
    assert parse_options(sample, {"epochs": 5}) == {"epochs": 5}  # already typed: kept


@pytest.mark.parametrize("raw, match", [
    ({"lrr": "1"}, r"has no option 'lrr'; did you mean 'lr'\?.*accepted: lr, epochs"),
    ({"epochs": "1.5"}, r"epochs='1.5': expected an integer"),
    ({"lr": "fast"}, r"lr='fast': expected a number"),
    ({"flag": "maybe"}, r"flag='maybe': expected true/false"),
    ({"mode": "max"}, r"mode='max': expected one of 'sum', 'mean'"),
])
def test_parse_options_errors(raw, match):
    with pytest.raises(BenchError, match=match):
        parse_options(sample, raw, name="sample")


def test_parse_options_on_registered_method():
    fn = METHODS.get("npo-gd")
    assert parse_options(fn, {"beta": "0.5", "epochs": "2"}) == {"beta": 0.5, "epochs": 2}
    with pytest.raises(BenchError, match="no option 'gamma'"):
        parse_options(fn, {"gamma": "1"}, name="npo-gd")


def test_effective_options_fills_defaults_and_requires():
    eff = effective_options(sample, {"must": 2, "lr": 0.1})
    assert eff == {"lr": 0.1, "epochs": 10, "flag": False, "name": "x", "mode": "sum",
                   "cap": None, "must": 2}
    with pytest.raises(BenchError, match="needs option 'must'"):
        effective_options(sample, {})


def test_split_assignments():
    assert split_assignments(["a=1", "b=x=y", "a=2"]) == {"a": "2", "b": "x=y"}
    with pytest.raises(BenchError, match="key=value"):
        split_assignments(["novalue"])


# ----------------------------------------------------------------------------- user adapters


def test_user_adapter_from_file(tmp_path, trained):
    f = tmp_path / "my_method.py"
    f.write_text(textwrap.dedent("""
        from dataclasses import dataclass

        @dataclass
        class Cfg:
            k: int = 1

        def unlearn(model, forget, retain, *, scale: float = 2.0, steps: int = 1):
            model.provenance["scaled"] = scale * steps
            return model

        NOT_CALLABLE = 3
        def two_args(model, forget):
            return model
    """))
    name, fn = resolve_method(f"{f}:unlearn")
    assert name == f"{f}:unlearn"
    assert method_options(fn) == {"scale": (float, 2.0), "steps": (int, 1)}
    b = fresh(trained)
    assert fn(b, FORGET, RETAIN, **parse_options(fn, {"scale": "3"})) is b
    assert b.provenance["scaled"] == 3.0

    with pytest.raises(BenchError, match="file not found"):
        resolve_method(f"{tmp_path / 'nope.py'}:unlearn")
    with pytest.raises(BenchError, match="has no function 'unlern'; did you mean 'unlearn'"):
        resolve_method(f"{f}:unlern")
    with pytest.raises(BenchError, match="not callable"):
        resolve_method(f"{f}:NOT_CALLABLE")
    with pytest.raises(BenchError, match=r"must take \(model, forget, retain"):
        resolve_method(f"{f}:two_args")


def test_user_adapter_import_error_and_module_spec(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(BenchError, match="failed to import: RuntimeError: boom"):
        resolve_method(f"{bad}:unlearn")
    name, fn = resolve_method("bench.methods.gd:unlearn")
    assert fn is METHODS.get("gd")
    with pytest.raises(BenchError, match="cannot import module"):
        resolve_method("no_such_pkg_xyz:unlearn")


def test_unknown_registered_method_suggests():
    with pytest.raises(BenchError, match="did you mean 'npo'"):
        resolve_method("npoo")
