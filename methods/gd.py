"""Gradient difference, "GradDiff" (Liu et al. 2022): −NLL(forget) + α·NLL(retain).

Both NLLs are micro-batch means over answer tokens (Hugging Face's ``outputs.loss``, as
open-unlearning's ``GradDiff`` with ``gamma=1``, ``alpha=1``, ``retain_loss_type=NLL``);
each forget example is paired with a random retain example. Training defaults:
open-unlearning TOFU (:data:`bench.training.TOFU`). Trains ``model.module`` in place.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.items import Item
from bench.model_bundle import ModelBundle
from bench.registry import METHODS
from bench.training import TOFU, token_mean_nll, train


@METHODS.register("gd", "Gradient difference: -NLL(forget) + alpha*NLL(retain)")
def unlearn(
    model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], *,
    alpha: float = 1.0,
    lr: float = TOFU.lr, epochs: int = TOFU.epochs, batch_size: int = TOFU.batch_size,
    grad_accum: int = TOFU.grad_accum, weight_decay: float = TOFU.weight_decay,
    warmup_epochs: float = TOFU.warmup_epochs, max_length: int = TOFU.max_length,
    seed: int = TOFU.seed,
) -> ModelBundle:
    def loss(module, b):
        return -token_mean_nll(module, b["forget"]) + alpha * token_mean_nll(module, b["retain"])

    train(model, loss, {"forget": forget, "retain": retain}, lr=lr, epochs=epochs,
          batch_size=batch_size, grad_accum=grad_accum, weight_decay=weight_decay,
          warmup_epochs=warmup_epochs, max_length=max_length, seed=seed, desc="gd")
    return model
