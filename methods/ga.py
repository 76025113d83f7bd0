"""Gradient ascent (Yao et al. 2023): minimise −NLL(forget).

NLL is the mean answer-token NLL of a forget micro-batch (Hugging Face's ``outputs.loss``,
as open-unlearning's ``GradAscent``). Training defaults: open-unlearning TOFU
(:data:`bench.training.TOFU`: AdamW, lr 1e-5, weight decay 0.01, batch 8 × accumulation
4, 10 epochs, 1 warm-up epoch, max length 512). Trains ``model.module`` in place.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.items import Item
from bench.model_bundle import ModelBundle
from bench.registry import METHODS
from bench.training import TOFU, token_mean_nll, train


@METHODS.register("ga", "Gradient ascent: minimise -NLL(forget)")
def unlearn(
    model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], *,
    lr: float = TOFU.lr, epochs: int = TOFU.epochs, batch_size: int = TOFU.batch_size,
    grad_accum: int = TOFU.grad_accum, weight_decay: float = TOFU.weight_decay,
    warmup_epochs: float = TOFU.warmup_epochs, max_length: int = TOFU.max_length,
    seed: int = TOFU.seed,
) -> ModelBundle:
    def loss(module, b):
        return -token_mean_nll(module, b["forget"])

    train(model, loss, {"forget": forget}, lr=lr, epochs=epochs, batch_size=batch_size,
          grad_accum=grad_accum, weight_decay=weight_decay, warmup_epochs=warmup_epochs,
          max_length=max_length, seed=seed, desc="ga")
    return model
