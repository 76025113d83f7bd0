"""Maximum entropy on the forget set (seed 004, closer-look ME+GD / ME+KL).

    me-gd = α · ME(forget) + NLL(retain)        me-kl = α · ME(forget) + KL(ref ‖ θ) on retain

ME is a per-position divergence from the uniform distribution U over the vocabulary V,
averaged over the positions scored (position t predicts token t+1):

* ``me_direction="code"`` (default: closer-look's ``get_me_loss``, the code behind the
  published numbers): ``kl_div(log p_θ, U)`` = KL(U ‖ p_θ) = −log|V| − (1/|V|)·Σ_v log p_θ(v);
* ``me_direction="paper"`` (the paper's formula): KL(p_θ ‖ U) = log|V| − H(p_θ).

Both are 0 exactly at the uniform distribution and positive elsewhere.
``me_tokens="sequence"`` (default, seed 004: question **and** answer tokens, closer-look's
``mask=false``) scores every position whose target token is a real token; closer-look
also scores the EOS padding up to its fixed max length, which depends on padding, and we
do not. ``"answer"`` scores answer tokens only. log p is ``log_softmax`` (closer-look adds
1e-12 to the softmax before the log: the same above 1e-12). α = 0.1 (TOFU; 1.0 continual,
0.5 real-world); training defaults closer-look's (:data:`methods._common.CLOSER_LOOK`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from bench.errors import BenchError
from bench.items import Item
from bench.methods._common import CLOSER_LOOK, register, unlearn_with
from bench.model_bundle import ModelBundle
from bench.training import IGNORE, TrainOptions


def me_loss(logits, mask, direction: str = "code"):
    """Mean over positions with ``mask`` of the divergence from uniform (module docstring).
    ``logits`` [B, T, V] already aligned with ``mask`` [B, T] (the predicting positions)."""
    import torch.nn.functional as F

    lp = F.log_softmax(logits.float(), dim=-1)
    v = logits.shape[-1]
    if direction == "code":  # KL(U || p) = -log V - mean_v log p_v
        per = -math.log(v) - lp.mean(dim=-1)
    elif direction == "paper":  # KL(p || U) = log V - H(p) = log V + sum_v p log p
        per = math.log(v) + (lp.exp() * lp).sum(dim=-1)
    else:
        raise BenchError(f"me_direction must be 'code' or 'paper', got {direction!r}")
    m = mask.to(per.dtype)
    return (per * m).sum() / m.sum().clamp(min=1)


def me_term(direction: str, tokens: str):
    def term(module, b):
        f = b["forget"]
        logits = module(input_ids=f["input_ids"], attention_mask=f["attention_mask"], use_cache=False).logits[:, :-1]
        if tokens == "sequence":
            mask = f["attention_mask"][:, 1:] == 1
        elif tokens == "answer":
            mask = f["labels"][:, 1:] != IGNORE
        else:
            raise BenchError(f"me_tokens must be 'sequence' or 'answer', got {tokens!r}")
        return me_loss(logits, mask, direction)

    return term


Direction = Literal["code", "paper"]
Tokens = Literal["sequence", "answer"]


@register("me-gd", "Maximum entropy on forget (question+answer tokens) + NLL(retain)", "seed 004 (closer-look)")
def me_gd(model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], *,
          alpha: float = 0.1, me_direction: Direction = "code", me_tokens: Tokens = "sequence",
          train: TrainOptions = CLOSER_LOOK) -> ModelBundle:
    return unlearn_with(model, forget, retain, train, me_term(me_direction, me_tokens), reg="gd",
                        gamma=alpha, alpha=1.0, desc="me-gd")


@register("me-kl", "Maximum entropy on forget + KL(ref||theta) on retain", "seed 004 (closer-look)")
def me_kl(model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], *,
          alpha: float = 0.1, me_direction: Direction = "code", me_tokens: Tokens = "sequence",
          kl_direction: Literal["ref||theta", "theta||ref"] = "ref||theta",
          train: TrainOptions = CLOSER_LOOK) -> ModelBundle:
    return unlearn_with(model, forget, retain, train, me_term(me_direction, me_tokens), reg="kl",
                        gamma=alpha, alpha=1.0, kl_direction=kl_direction, desc="me-kl")
