"""Gradient ascent (Yao et al. 2023) and GA with a KL term on retain (seed 003, NEKO).

    ga    = −NLL(forget)
    ga-kl = α·(−NLL(forget)) + β·KL(ref ‖ θ) on retain

NLL is the mean answer-token NLL of a forget micro-batch (open-unlearning's
``GradAscent``); KL is :func:`bench.training.kl_to_reference` (KL(ref ‖ θ), per position)
against the incoming model (a frozen copy; with LoRA the adapters-off network).
Defaults: ``ga`` open-unlearning TOFU (:data:`bench.training.TOFU`); ``ga-kl`` seed 003's
code: α = 0.2, β = 1, lr 5e-5, batch 32, 500 steps, linear decay without warm-up, max
length 128 (the paper's early stopping with patience 4 is ``early_stop_patience=4``).
Trains ``model.module`` in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from bench.items import Item
from bench.methods._common import register, unlearn_with
from bench.model_bundle import ModelBundle
from bench.training import TOFU, TrainOptions, token_mean_nll

NEKO = TrainOptions(lr=5e-5, batch_size=32, grad_accum=1, max_steps=500, warmup_epochs=0.0, max_length=128)


def ga_term(module, b):
    return -token_mean_nll(module, b["forget"])


@register("ga", "Gradient ascent: minimise -NLL(forget)", "Yao et al. 2023; seeds 003, 004")
def unlearn(model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], *,
            train: TrainOptions = TOFU) -> ModelBundle:
    return unlearn_with(model, forget, retain, train, ga_term, reg=None, desc="ga")


@register("ga-kl", "alpha*(-NLL(forget)) + beta*KL(ref||theta) on retain", "seed 003 (NEKO, SemEval-2025)")
def ga_kl(model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], *,
          alpha: float = 0.2, beta: float = 1.0, kl_direction: Literal["ref||theta", "theta||ref"] = "ref||theta",
          train: TrainOptions = NEKO) -> ModelBundle:
    return unlearn_with(model, forget, retain, train, ga_term, reg="kl", gamma=alpha, alpha=beta,
                        kl_direction=kl_direction, desc="ga-kl")
