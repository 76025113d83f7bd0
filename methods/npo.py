"""Negative preference optimisation (Zhang et al. 2024), alone and with a retain term.

    npo    = −(2/β) · mean_forget log σ(−β · (log p_θ(y|x) − log p_ref(y|x)))
    npo-gd = npo + α · NLL(retain)           ("NPO+", open-unlearning's NPO config)
    npo-kl = npo + α · KL(ref ‖ θ) on retain

``log p(y|x)`` is the *sum* of the answer-token log-probs (open-unlearning's
``compute_batch_nll``). ``log p_ref`` is fixed per forget example: it is computed once,
before training, from the incoming model through the ``hf`` request backend and its
request cache (no second copy of the model is held for it); only ``npo-kl`` keeps a frozen
copy, for the KL term (in bf16 when training in bf16; with LoRA the adapters-off network).
NLL(retain) is the micro-batch mean over answer tokens. β = 0.1, α = 1 (open-unlearning's
``NPO`` config, which always adds the retain NLL: its "NPO" is our ``npo-gd``). Training
defaults: open-unlearning TOFU (:data:`bench.training.TOFU`). Trains ``model.module``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from bench.items import Item
from bench.methods._common import logp, npo_loss, register, unlearn_with
from bench.model_bundle import ModelBundle
from bench.training import TOFU, TrainOptions

__all__ = ["npo_loss", "npo_term"]


def npo_term(beta: float):
    def term(module, b):
        return npo_loss(logp(module, b["forget"]), b["forget"]["ref_logp"], beta)

    return term


@register("npo", "NPO: -(2/beta) E log sigmoid(-beta log(p/p_ref)) on forget", "Zhang et al. 2024")
def npo(model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], *,
        beta: float = 0.1, train: TrainOptions = TOFU) -> ModelBundle:
    return unlearn_with(model, forget, retain, train, npo_term(beta), reg=None, fixed_ref=("forget",), desc="npo")


@register("npo-gd", "NPO + alpha*NLL(retain) (NPO+; open-unlearning's NPO config)", "Zhang et al. 2024; seeds 002, 004")
def npo_gd(model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], *,
           alpha: float = 1.0, beta: float = 0.1, train: TrainOptions = TOFU) -> ModelBundle:
    return unlearn_with(model, forget, retain, train, npo_term(beta), reg="gd", alpha=alpha,
                        fixed_ref=("forget",), desc="npo-gd")


@register("npo-kl", "NPO + alpha*KL(ref||theta) on retain", "Zhang et al. 2024; seed 004")
def npo_kl(model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], *,
           alpha: float = 1.0, beta: float = 0.1, kl_direction: Literal["ref||theta", "theta||ref"] = "ref||theta",
           train: TrainOptions = TOFU) -> ModelBundle:
    return unlearn_with(model, forget, retain, train, npo_term(beta), reg="kl", alpha=alpha,
                        kl_direction=kl_direction, fixed_ref=("forget",), desc="npo-kl")
