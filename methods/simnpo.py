"""SimNPO (Fan et al. 2024): NPO without a reference, length-normalised, with a margin.

    simnpo = γ · (−(2/β) · mean_forget log σ(β · (L̄(y|x) − δ))) + α · NLL(retain)

``L̄(y|x)`` = summed answer NLL / number of answer tokens (per sequence); NLL(retain) the
micro-batch mean over answer tokens. Defaults: open-unlearning's ``SimNPO`` config
(β = 4.5, δ = 0, γ = 0.125, α = 1) on its TOFU training settings. No reference model.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.items import Item
from bench.methods._common import register, unlearn_with
from bench.model_bundle import ModelBundle
from bench.training import TOFU, TrainOptions, batch_nll


def simnpo_loss(mean_nll, beta: float, delta: float):
    """−(2/β)·mean log σ(β·(L̄ − δ)) for per-sequence mean answer NLLs L̄ [B]."""
    import torch.nn.functional as F

    return -(2.0 / beta) * F.logsigmoid(beta * (mean_nll - delta)).mean()


@register("simnpo", "SimNPO: gamma*(-(2/beta) E log sigmoid(beta(mean NLL - delta))) + alpha*NLL(retain)",
          "Fan et al. 2024")
def simnpo(model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], *,
           beta: float = 4.5, delta: float = 0.0, gamma: float = 0.125, alpha: float = 1.0,
           train: TrainOptions = TOFU) -> ModelBundle:
    def term(module, b):
        return simnpo_loss(batch_nll(module, b["forget"], "mean"), beta, delta)

    return unlearn_with(model, forget, retain, train, term, reg="gd", gamma=gamma, alpha=alpha, desc="simnpo")
