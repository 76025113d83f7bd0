"""Gradient difference, "GradDiff" (Liu et al. 2022): −NLL(forget) + α·NLL(retain).

Both NLLs are micro-batch means over answer tokens (Hugging Face's ``outputs.loss``, as
open-unlearning's ``GradDiff`` with ``gamma=1``, ``alpha=1``, ``retain_loss_type=NLL``);
each forget example is paired with a random retain example. Training defaults:
open-unlearning TOFU (:data:`bench.training.TOFU`). Trains ``model.module`` in place.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.items import Item
from bench.methods._common import register, unlearn_with
from bench.methods.ga import ga_term
from bench.model_bundle import ModelBundle
from bench.training import TOFU, TrainOptions


@register("gd", "Gradient difference: -NLL(forget) + alpha*NLL(retain)", "Liu et al. 2022; seed 002")
def unlearn(model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], *,
            alpha: float = 1.0, train: TrainOptions = TOFU) -> ModelBundle:
    return unlearn_with(model, forget, retain, train, ga_term, reg="gd", alpha=alpha, desc="gd")
