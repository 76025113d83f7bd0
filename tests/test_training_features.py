"""The grown-up training loop: max_steps, early stopping, checkpoint hooks, loss terms,
precision, gradient checkpointing, LoRA, option groups."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch

from bench.adapters import bind_options, method_options
from bench.errors import BenchError
from bench.items import Item
from bench.model_bundle import ModelBundle
from bench.training import TrainOptions, token_mean_nll, train, training_hooks

ITEMS = [
    Item("a", "Who wrote the book?", "The book was written by Basil Mahfouz."),
    Item("b", "Where was the author born?", "The author was born in Kuwait City."),
    Item("c", "What is the capital of France?", "Paris is the capital of France."),
    Item("d", "Who jumps over the lazy dog?", "The quick brown fox."),
]
QUICK = dict(lr=1e-3, batch_size=1, grad_accum=1, warmup_epochs=0.0, max_length=64, device="cpu")


def fresh(b: ModelBundle) -> ModelBundle:
    return ModelBundle(copy.deepcopy(b.module), b.tokenizer, b.prompt, b.name)


def nll_loss(m, x):
    return token_mean_nll(m, x["train"])


def test_max_steps_cycles_epochs_and_decays_to_zero(tiny_bundle):
    b = fresh(tiny_bundle)
    log = train(b, nll_loss, {"train": ITEMS}, epochs=1, max_steps=10, **QUICK)
    assert log.steps == 10 and len(log.losses) == 10  # 4 items per epoch: 2.5 epochs
    log = train(fresh(tiny_bundle), nll_loss, {"train": ITEMS}, epochs=5, max_steps=3, **QUICK)
    assert len(log.losses) == 3


def test_loss_terms_logged_per_step(tiny_bundle):
    def loss(m, x):
        a = token_mean_nll(m, x["train"])
        return {"loss": 2 * a, "half": a.detach()}

    b = fresh(tiny_bundle)
    log = train(b, loss, {"train": ITEMS}, epochs=2, **QUICK)
    assert len(log.terms["half"]) == len(log.losses) == 8
    assert all(t == pytest.approx(x / 2, rel=1e-6) for t, x in zip(log.terms["half"], log.losses))
    assert b.provenance["training"][-1]["terms"]["half"][0] == pytest.approx(log.terms["half"][0], abs=1e-6)
    with pytest.raises(BenchError, match="must give 'loss'"):
        train(fresh(tiny_bundle), lambda m, x: {"x": token_mean_nll(m, x["train"])}, {"train": ITEMS}, epochs=1, **QUICK)


def test_checkpoint_hook_every_n_steps_and_each_epoch(tiny_bundle):
    calls = []

    def hook(step, bundle):
        assert not bundle.module.training
        calls.append(step)

    train(fresh(tiny_bundle), nll_loss, {"train": ITEMS}, epochs=2, checkpoint_every=3, on_checkpoint=hook, **QUICK)
    assert calls == [3, 6]
    calls.clear()
    with training_hooks(on_checkpoint=hook):  # installed by the caller, the method does not know
        train(fresh(tiny_bundle), nll_loss, {"train": ITEMS}, epochs=2, checkpoint_each_epoch=True, **QUICK)
    assert calls == [4, 8]
    calls.clear()
    train(fresh(tiny_bundle), nll_loss, {"train": ITEMS}, epochs=1, **QUICK)
    assert calls == []  # no hook outside the block


def test_early_stopping_on_heldout_loss(tiny_bundle):
    # a loss that grows with the step count (batches.step): the held-out value never improves
    # after the first evaluation, so training stops after `patience` more evaluations
    log = train(fresh(tiny_bundle), lambda m, x: token_mean_nll(m, x["train"]) + 10.0 * x.step,
                {"train": ITEMS * 5}, epochs=50, early_stop_patience=2, early_stop_fraction=0.2, eval_every=2,
                **QUICK)
    assert log.stopped_early and len(log.losses) == 6 and [s for s, _ in log.heldout] == [2, 4, 6]
    # with the plain NLL the held-out loss improves and training runs to the end
    log = train(fresh(tiny_bundle), nll_loss, {"train": ITEMS * 5}, epochs=2, early_stop_patience=2,
                early_stop_fraction=0.2, **QUICK)
    assert not log.stopped_early and len(log.losses) == 32 and len(log.heldout) == 2
    with pytest.raises(BenchError, match="nothing left to train on"):
        train(fresh(tiny_bundle), nll_loss, {"train": ITEMS[:1]}, epochs=1, early_stop_patience=1, **QUICK)


def test_bf16_and_grad_checkpointing_train_on_cpu(tiny_bundle):
    b = fresh(tiny_bundle)
    log = train(b, nll_loss, {"train": ITEMS}, epochs=3, precision="bf16", grad_checkpointing=True, **QUICK)
    assert log.losses[-1] < log.losses[0]
    assert next(b.module.parameters()).dtype == torch.float32  # fp32 master weights
    assert not b.module.is_gradient_checkpointing
    with pytest.raises(BenchError, match="fp16 needs CUDA"):
        if not torch.cuda.is_available():
            train(fresh(tiny_bundle), nll_loss, {"train": ITEMS}, epochs=1, precision="fp16", **QUICK)
        else:
            raise BenchError("fp16 needs CUDA")


def test_lora_trains_adapters_only_and_returns_plain_merged_model(tiny_bundle):
    b = fresh(tiny_bundle)
    before = {k: v.clone() for k, v in b.module.state_dict().items()}
    log = train(b, nll_loss, {"train": ITEMS}, epochs=3, lora_r=4, lora_alpha=8, lora_targets="q_proj,v_proj",
                **{**QUICK, "lr": 1e-2})
    assert type(b.module) is type(tiny_bundle.module)
    after = b.module.state_dict()
    assert set(after) == set(before)
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all(("q_proj" in k or "v_proj" in k) for k in changed)
    assert log.losses[-1] < log.losses[0]
    with pytest.raises(BenchError, match="lora_targets"):
        train(fresh(tiny_bundle), nll_loss, {"train": ITEMS}, epochs=1, lora_r=2, lora_targets="nope_proj", **QUICK)


def test_bad_shared_options_are_one_line_errors(tiny_bundle):
    with pytest.raises(BenchError, match="max_steps must be at least 1"):
        train(fresh(tiny_bundle), nll_loss, {"train": ITEMS}, max_steps=0, **QUICK)
    with pytest.raises(BenchError, match="unknown options"):
        train(fresh(tiny_bundle), nll_loss, {"train": ITEMS}, learning_rate=1.0)
    with pytest.raises(BenchError, match="CUDA is not available"):
        if torch.cuda.is_available():
            raise BenchError("CUDA is not available")
        train(fresh(tiny_bundle), nll_loss, {"train": ITEMS}, **{**QUICK, "device": "cuda"})


MY = TrainOptions(lr=5e-5)


@dataclass(frozen=True)
class Extra:
    lr: float = 1.0


def test_option_groups_flatten_and_reject_collisions():
    def m(model, forget, retain, *, beta: float = 0.1, train: TrainOptions = MY, ctx=None):
        return train

    opts = method_options(m)
    assert opts["beta"] == (float, 0.1) and opts["lr"] == (float, 5e-5) and opts["max_steps"][1] is None
    assert "train" not in opts and "ctx" not in opts
    kw = bind_options(m, {"beta": 0.2, "lr": 1e-3})
    assert kw["beta"] == 0.2 and kw["train"] == TrainOptions(lr=1e-3)
    assert bind_options(m, {})["train"] == TrainOptions(lr=5e-5)

    def clash(model, forget, retain, *, lr: float = 1.0, extra: Extra = Extra()):
        return model

    with pytest.raises(BenchError, match="repeats another option"):
        method_options(clash)


@pytest.mark.parametrize("fmt", ["model", "raw", "document"])
def test_fixed_reference_logprobs_equal_the_model_before_training(tiny_bundle, fmt):
    """ref_logp (backend + cache for pairs, a no-grad pass for document windows) equals the
    incoming model's own summed log-probs of exactly the tokens it trains on."""
    from bench.items import Split
    from bench.training import batch_nll

    seen = []

    def loss(m, x):
        lp = -batch_nll(m, x["forget"])
        if x.step == 0:
            seen.append((lp.detach().clone(), x["forget"]["ref_logp"].clone()))
        return -lp.mean()

    split = Split(ITEMS, format=fmt)
    train(fresh(tiny_bundle), loss, {"forget": split}, epochs=1, fixed_ref=("forget",),
          **{**QUICK, "batch_size": 2, "grad_accum": 2, "max_length": 12 if fmt == "document" else 64})
    assert len(seen) == 2  # the two micro-batches of the first step, before any update
    for lp, ref in seen:
        assert torch.allclose(lp, ref, atol=1e-4)


def test_group_by_length_sorts_each_megabatch_longest_first():
    """HF's LengthGroupedSampler convention: each epoch's permutation is cut into mega-batches
    of MEGABATCH micro-batches, sorted by length, longest first; every example once per epoch."""
    import torch

    from bench.training import MEGABATCH, TrainOptions, _plan

    n = 2 * MEGABATCH * 2 + 3  # two full mega-batches of batch 2 and a partial one
    lengths = [(7 * i) % 23 + 1 for i in range(n)]
    opts = TrainOptions(batch_size=2, grad_accum=1, group_by_length=True)
    micro = (n + 1) // 2
    plan = _plan({"train": n}, "train", list(range(n)), opts, torch.Generator().manual_seed(0), 0, micro, micro, lengths)
    order = [r.idx["train"] for g in plan[0] for m in g for r in m]
    assert sorted(order) == list(range(n))
    mega = MEGABATCH * 2
    chunks = [order[i:i + mega] for i in range(0, n, mega)]
    assert len(chunks) == 3
    for c in chunks:
        assert [lengths[i] for i in c] == sorted((lengths[i] for i in c), reverse=True)
    plain = _plan({"train": n}, "train", list(range(n)), TrainOptions(batch_size=2, grad_accum=1),
                  torch.Generator().manual_seed(0), 0, micro, micro, lengths)
    plain_order = [r.idx["train"] for g in plain[0] for m in g for r in m]
    assert plain_order != order  # off by default: the permutation as drawn
    # the same permutation underlies both: each mega-batch holds the same examples
    assert [sorted(plain_order[i:i + mega]) for i in range(0, n, mega)] == [sorted(c) for c in chunks]


@pytest.mark.parametrize("lora", [False, True])
def test_reference_model_replaces_the_incoming_model_as_reference(tiny_bundle, tiny_dir, liven, lora):
    """Inside ``reference_model(dir)`` the fixed ``ref_logp`` and ``batches.ref`` (a frozen
    copy; with LoRA too, instead of the adapters-off network) are that model's summed
    log-probs, not the incoming model's; outside the block, the incoming model's."""
    from bench.training import batch_nll, reference_model

    seen = []

    def loss(m, x):
        lp = -batch_nll(m, x["forget"])
        if x.step == 0:
            with torch.no_grad():
                other = -batch_nll(tiny_bundle.module, x["forget"])  # the model saved in tiny_dir
            seen.append((lp.detach().clone(), x["forget"]["ref_logp"].clone(), x.ref.sum_logprob(x["forget"]), other))
        return -lp.mean()

    opts = {**QUICK, "batch_size": 2, "grad_accum": 2, **({"lora_r": 2} if lora else {})}
    incoming = fresh(tiny_bundle)
    liven(incoming.module, 3)  # other weights than tiny_dir's
    with reference_model(str(tiny_dir)):
        log = train(incoming, loss, {"forget": ITEMS}, epochs=1, fixed_ref=("forget",), reference=True, **opts)
    assert log.options["reference_model"] == str(tiny_dir) and log.options["reference_copy"]
    assert len(seen) == 2
    for lp, ref_logp, ref_now, other in seen:
        assert torch.allclose(ref_logp, other, atol=1e-4) and torch.allclose(ref_now, other, atol=1e-4)
        assert (lp - other).abs().max() > 1e-2  # the two models tell apart
    seen.clear()
    incoming = fresh(tiny_bundle)
    liven(incoming.module, 3)
    log = train(incoming, loss, {"forget": ITEMS}, epochs=1, fixed_ref=("forget",), reference=True, **opts)
    assert "reference_model" not in log.options and log.options["reference_copy"] is (not lora)
    for lp, ref_logp, ref_now, _ in seen:
        assert torch.allclose(ref_logp, lp, atol=1e-4) and torch.allclose(ref_now, lp, atol=1e-4)
