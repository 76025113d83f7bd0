"""IDK fine-tuning and DPO with refusals as the preferred answer (seed 004, closer-look).

    idk-gd = NLL(refusal | forget question) + NLL(retain)
    idk-ap = NLL(refusal | forget question) + AP(retain)
    AP     = −(1/β)·mean log σ(−β·(log p(y'|x) − log p(y|x)))   on retain, y' a refusal
    dpo-*  = −(2/β)·mean log σ(β·((log p(y'|x) − log p(y|x)) − (log p_ref(y'|x) − log p_ref(y|x))))
             on forget (y' a refusal = chosen, y the forget answer = rejected) + the regulariser

Each forget row draws a refusal template from the task's ``idontknow.jsonl`` afresh per
draw, and the retain row it is paired with uses the *same template index* for AP's y'
(closer-look's ``rand_pos`` shared by ``forget_idk`` and ``retain_idk``; closer-look seeds
the draw by the item index, we draw it per step). NLL is the mean over answer tokens;
log p are sums (closer-look's ``get_batch_loss``). DPO's reference log-probs are fixed per
(question, answer) pair: computed once before training through the request backend, for
exactly the pairs the sampling plan will draw. β = 0.1; forget and regulariser weights 1;
training defaults closer-look's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from bench.items import Item
from bench.methods._common import CLOSER_LOOK, dpo_loss, logp, refusals_of, register, unlearn_with
from bench.model_bundle import ModelBundle
from bench.training import TrainOptions, token_mean_nll

KL = Literal["ref||theta", "theta||ref"]


def idk_term(module, b):
    return token_mean_nll(module, b["forget_idk"])


def _idk(name: str, reg: str, model, forget, retain, train, ctx, beta: float, alpha: float) -> ModelBundle:
    return unlearn_with(model, forget, retain, train, idk_term, reg=reg, alpha=alpha, ap_beta=beta,
                        views={"forget_idk": "forget"}, refusals=refusals_of(ctx, name), desc=name)


@register("idk-gd", "NLL of a refusal on forget questions + NLL(retain)", "seed 004 (closer-look)")
def idk_gd(model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], *,
           alpha: float = 1.0, train: TrainOptions = CLOSER_LOOK, ctx: Any = None) -> ModelBundle:
    return _idk("idk-gd", "gd", model, forget, retain, train, ctx, 0.1, alpha)


@register("idk-ap", "NLL of a refusal on forget questions + answer preservation on retain", "seed 004 (closer-look)")
def idk_ap(model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], *,
           alpha: float = 1.0, beta: float = 0.1, train: TrainOptions = CLOSER_LOOK, ctx: Any = None) -> ModelBundle:
    return _idk("idk-ap", "ap", model, forget, retain, train, ctx, beta, alpha)


def dpo_term(beta: float):
    def term(module, b):
        return dpo_loss(logp(module, b["forget_idk"]), logp(module, b["forget"]),
                        b["forget_idk"]["ref_logp"], b["forget"]["ref_logp"], beta)

    return term


def _dpo(name: str, reg: str, model, forget, retain, train, ctx, beta: float, alpha: float,
         kl_direction: str = "ref||theta") -> ModelBundle:
    return unlearn_with(model, forget, retain, train, dpo_term(beta), reg=reg, alpha=alpha, ap_beta=beta,
                        kl_direction=kl_direction, views={"forget_idk": "forget"},
                        fixed_ref=("forget", "forget_idk"), refusals=refusals_of(ctx, name), desc=name)


@register("dpo-gd", "DPO (refusal preferred over the forget answer) + NLL(retain)", "seed 004 (closer-look)")
def dpo_gd(model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], *,
           alpha: float = 1.0, beta: float = 0.1, train: TrainOptions = CLOSER_LOOK, ctx: Any = None) -> ModelBundle:
    return _dpo("dpo-gd", "gd", model, forget, retain, train, ctx, beta, alpha)


@register("dpo-kl", "DPO (refusal preferred) + KL(ref||theta) on retain", "seed 004 (closer-look)")
def dpo_kl(model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], *,
           alpha: float = 1.0, beta: float = 0.1, kl_direction: KL = "ref||theta",
           train: TrainOptions = CLOSER_LOOK, ctx: Any = None) -> ModelBundle:
    return _dpo("dpo-kl", "kl", model, forget, retain, train, ctx, beta, alpha, kl_direction)


@register("dpo-ap", "DPO (refusal preferred) + answer preservation on retain", "seed 004 (closer-look)")
def dpo_ap(model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], *,
           alpha: float = 1.0, beta: float = 0.1, train: TrainOptions = CLOSER_LOOK, ctx: Any = None) -> ModelBundle:
    return _dpo("dpo-ap", "ap", model, forget, retain, train, ctx, beta, alpha)
