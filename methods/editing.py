"""Task-vector model editing: TV (Ilharco et al. 2023) and WME (seed 002), see :mod:`bench.editing`.

    tv         θ_final = θ_full − scale·(θ_fgt − θ0)
    wme-grad   θ_final = θ_full − W ⊙ (θ_fgt − θ0),  W = (|g_f| + ε)/(|g_f| + |g_r| + 2ε)
    wme-fisher the same with squared gradients (τ = 2)
    wme        the general form: any τ, ``weighting`` ratio / softmax / constant / random /
               pruning, gradients at θ0 (default) or θ_full, a sample fraction

θ_fgt is θ0 fine-tuned on the forget set (answer-token NLL) with the method's training
options — seed 002's: 20 epochs on TOFU (10 elsewhere) including 1 warm-up epoch, lr 1e-5
(MUSE 1e-4), weight decay 0.01, batch 32. ``g_f`` / ``g_r`` are gradients of the
dataset-mean answer NLL over forget / retain (:func:`bench.editing.dataset_gradients`).
θ0 comes from the run (``ctx.original_model``: ``--original MODEL``, or a prepared alias's
base model). ``tv`` with ``base="target"`` is MUSE's task vector instead: fine-tune θ_full
itself on forget and subtract ``scale·(θ_fgt − θ_full)`` (MUSE uses scale 5 for News); it
needs no θ0.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from bench.errors import BenchError
from bench.items import Item
from bench.methods._common import register
from bench.model_bundle import ModelBundle
from bench.training import TrainOptions, finetune

SEED002 = TrainOptions(lr=1e-5, epochs=20, batch_size=32, grad_accum=1, warmup_epochs=1.0, weight_decay=0.01)
Weighting = Literal["ratio", "softmax", "constant", "random", "pruning"]


def _load_original(model: ModelBundle, ctx: Any, name: str) -> ModelBundle:
    from bench import models

    path = getattr(ctx, "original_model", None)
    if not path:
        raise BenchError(f"method '{name}' needs the original model θ0: give --original MODEL")
    orig = models.load_bundle(path, name=str(path))
    orig.prompt, orig.tokenizer = model.prompt, model.tokenizer  # tokenise exactly as the target does
    if type(orig.module) is not type(model.module) or sum(p.numel() for p in orig.module.parameters()) != sum(
            p.numel() for p in model.module.parameters()):
        raise BenchError(f"method '{name}': the original model {path} has another architecture than the target")
    return orig


def _finetune_forget(b: ModelBundle, forget: Sequence[Item], train: TrainOptions, desc: str) -> None:
    fields = {k: v for k, v in vars(train).items()
              if k not in ("epochs", "lr", "batch_size", "grad_accum", "weight_decay", "warmup_epochs",
                           "max_length", "seed")}
    finetune(b, forget, epochs=train.epochs, lr=train.lr, batch_size=train.batch_size, grad_accum=train.grad_accum,
             weight_decay=train.weight_decay, warmup_epochs=train.warmup_epochs, max_length=train.max_length,
             seed=train.seed, desc=desc, **fields)


def edit(model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], train: TrainOptions, ctx: Any,
         name: str, *, base: str = "original", scale: float = 1.0, wme: dict[str, Any] | None = None) -> ModelBundle:
    """Shared body of tv / wme-*: θ_fgt from θ0 (or θ_full), optional W, the edit."""
    import torch

    from bench.editing import LazyTensors, apply_edit, dataset_gradients, save_tensors, wme_weight

    if wme is not None and not 0 < wme["sample_fraction"] <= 1:
        raise BenchError(f"{name}: sample_fraction must be in (0, 1], got {wme['sample_fraction']}")
    src = _load_original(model, ctx, name) if base == "original" else ModelBundle(
        _clone(model.module), model.tokenizer, model.prompt, model.name)
    with tempfile.TemporaryDirectory(prefix="bench-edit-") as tmp:
        tmpd = Path(tmp)
        grads: dict[str, LazyTensors] = {}
        if wme is not None and wme["weighting"] in ("ratio", "softmax"):
            at = src if wme["grads_at"] == "theta0" else model
            for split, items in (("forget", forget), ("retain", retain)):
                g = dataset_gradients(at, items, fraction=wme["sample_fraction"], seed=train.seed,
                                      max_length=train.max_length, batch_size=wme["grad_batch_size"])
                grads[split] = LazyTensors(save_tensors(g, tmpd / f"g_{split}.safetensors"))
                del g
        theta0 = LazyTensors(save_tensors({k: v.detach().cpu() for k, v in src.module.named_parameters()},
                                          tmpd / "theta0.safetensors"))
        _finetune_forget(src, forget, train, f"{name}: fine-tune on forget")
        gen = torch.Generator().manual_seed(train.seed)

        def weight(pname: str, tv: Any) -> Any:
            gf = grads["forget"].get(pname) if grads else tv
            gr = grads["retain"].get(pname) if grads else tv
            return wme_weight(gf, gr, tau=wme["tau"], eps=wme["eps"], weighting=wme["weighting"],
                              omega=wme["omega"], prune_fraction=wme["prune_fraction"], task_vector=tv,
                              generator=gen)

        stats = apply_edit(model.module, src.module, theta0, weight if wme is not None else None, scale)
    model.module.eval()
    total = sum(p.numel() for p in model.module.parameters())
    mean_w = sum(stats[n] * p.numel() for n, p in model.module.named_parameters()) / max(1, total)
    model.provenance.setdefault("editing", []).append(
        {"method": name, "base": base, "scale": scale, "wme": wme, "mean_W": round(mean_w, 6),
         "original": getattr(ctx, "original_model", None) if base == "original" else None})
    model.provenance["training"] = model.provenance.get("training", []) + src.provenance.get("training", [])
    return model


def _clone(module: Any) -> Any:
    import copy

    return copy.deepcopy(module)


def _needs_original(options: dict[str, Any]) -> bool:
    return options.get("base", "original") == "original"


@register("tv", "Task vector: theta_full - scale*(theta_fgt - theta0)", "Ilharco et al. 2023; seed 002; MUSE",
          needs_original=_needs_original, trains_in_place=False)
def tv(model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], *,
       base: Literal["original", "target"] = "original", scale: float = 1.0,
       train: TrainOptions = SEED002, ctx: Any = None) -> ModelBundle:
    return edit(model, forget, retain, train, ctx, "tv", base=base, scale=scale)


def _wme(name: str, model, forget, retain, train, ctx, **w: Any) -> ModelBundle:
    return edit(model, forget, retain, train, ctx, name, base="original", scale=1.0, wme=w)


@register("wme-grad", "WME: theta_full - W*(theta_fgt - theta0), W from |grad| on forget vs retain at theta0",
          "seed 002 (WME)", needs_original=True, trains_in_place=False)
def wme_grad(model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], *,
             eps: float = 1e-20, sample_fraction: float = 1.0, grads_at: Literal["theta0", "theta_full"] = "theta0",
             grad_batch_size: int = 8, train: TrainOptions = SEED002, ctx: Any = None) -> ModelBundle:
    return _wme("wme-grad", model, forget, retain, train, ctx, tau=1.0, eps=eps, weighting="ratio", omega=0.5,
                prune_fraction=0.5, grads_at=grads_at, sample_fraction=sample_fraction,
                grad_batch_size=grad_batch_size)


@register("wme-fisher", "WME with squared gradients (diagonal Fisher), tau = 2", "seed 002 (WME)",
          needs_original=True, trains_in_place=False)
def wme_fisher(model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], *,
               eps: float = 1e-20, sample_fraction: float = 1.0,
               grads_at: Literal["theta0", "theta_full"] = "theta0", grad_batch_size: int = 8,
               train: TrainOptions = SEED002, ctx: Any = None) -> ModelBundle:
    return _wme("wme-fisher", model, forget, retain, train, ctx, tau=2.0, eps=eps, weighting="ratio", omega=0.5,
                prune_fraction=0.5, grads_at=grads_at, sample_fraction=sample_fraction,
                grad_batch_size=grad_batch_size)


@register("wme", "WME general form: any tau; ratio/softmax/constant/random/pruning weightings", "seed 002 (WME)",
          needs_original=True, trains_in_place=False)
def wme(model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], *,
        tau: float = 1.0, eps: float = 1e-20, weighting: Weighting = "ratio", omega: float = 0.5,
        prune_fraction: float = 0.5, sample_fraction: float = 1.0,
        grads_at: Literal["theta0", "theta_full"] = "theta0", grad_batch_size: int = 8,
        train: TrainOptions = SEED002, ctx: Any = None) -> ModelBundle:
    return _wme("wme", model, forget, retain, train, ctx, tau=tau, eps=eps, weighting=weighting, omega=omega,
                prune_fraction=prune_fraction, grads_at=grads_at, sample_fraction=sample_fraction,
                grad_batch_size=grad_batch_size)
