"""Negative preference optimisation (Zhang et al. 2024), alone and with a retain term.

    npo    = −(2/β) · mean_forget log σ(−β · (log p_θ(y|x) − log p_ref(y|x)))
    npo-gd = npo + α · NLL(retain)

``log p(y|x)`` is the *sum* of the answer-token log-probs (open-unlearning's
``compute_batch_nll``); ``ref`` is a frozen copy of the incoming model (eval mode, no
gradients); NLL(retain) is the micro-batch mean over answer tokens. β = 0.1 and α = 1 are
open-unlearning's ``NPO`` config, which always adds the retain NLL: its "NPO" is our
``npo-gd``. Training defaults: open-unlearning TOFU (:data:`bench.training.TOFU`).
Trains ``model.module`` in place; the reference copy is dropped at the end.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.items import Item
from bench.model_bundle import ModelBundle
from bench.registry import METHODS
from bench.training import TOFU, batch_nll, frozen_copy, token_mean_nll, train


def npo_loss(logp, ref_logp, beta: float):
    """−(2/β)·mean log σ(−β·(logp − ref_logp)) for per-sequence summed log-probs [B]."""
    import torch.nn.functional as F

    return -(2.0 / beta) * F.logsigmoid(-beta * (logp - ref_logp)).mean()


def _run(model: ModelBundle, forget, retain, alpha: float, beta: float, desc: str, **hp) -> ModelBundle:
    import torch

    ref = frozen_copy(model.module)

    def loss(module, b):
        with torch.no_grad():
            ref_logp = -batch_nll(ref, b["forget"])
        out = npo_loss(-batch_nll(module, b["forget"]), ref_logp, beta)
        return out + alpha * token_mean_nll(module, b["retain"]) if alpha else out

    splits = {"forget": forget, "retain": retain} if alpha else {"forget": forget}
    train(model, loss, splits, desc=desc, **hp)
    return model


@METHODS.register("npo", "NPO: -(2/beta) E log sigmoid(-beta log(p/p_ref)) on forget")
def npo(
    model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], *,
    beta: float = 0.1,
    lr: float = TOFU.lr, epochs: int = TOFU.epochs, batch_size: int = TOFU.batch_size,
    grad_accum: int = TOFU.grad_accum, weight_decay: float = TOFU.weight_decay,
    warmup_epochs: float = TOFU.warmup_epochs, max_length: int = TOFU.max_length,
    seed: int = TOFU.seed,
) -> ModelBundle:
    return _run(model, forget, retain, 0.0, beta, "npo", lr=lr, epochs=epochs,
                batch_size=batch_size, grad_accum=grad_accum, weight_decay=weight_decay,
                warmup_epochs=warmup_epochs, max_length=max_length, seed=seed)


@METHODS.register("npo-gd", "NPO + alpha*NLL(retain) (open-unlearning's NPO config)")
def npo_gd(
    model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], *,
    alpha: float = 1.0, beta: float = 0.1,
    lr: float = TOFU.lr, epochs: int = TOFU.epochs, batch_size: int = TOFU.batch_size,
    grad_accum: int = TOFU.grad_accum, weight_decay: float = TOFU.weight_decay,
    warmup_epochs: float = TOFU.warmup_epochs, max_length: int = TOFU.max_length,
    seed: int = TOFU.seed,
) -> ModelBundle:
    return _run(model, forget, retain, alpha, beta, "npo-gd", lr=lr, epochs=epochs,
                batch_size=batch_size, grad_accum=grad_accum, weight_decay=weight_decay,
                warmup_epochs=warmup_epochs, max_length=max_length, seed=seed)
