"""Pieces the training-based methods share: registration with a source, the forget and
regulariser terms, and one function that runs ``gamma·forget + alpha·regulariser`` on the
shared loop (:func:`bench.training.train`).

Conventions (METHODS.md): ``NLL`` of a batch is the mean over its answer tokens (Hugging
Face's ``outputs.loss``); ``log p(y|x)`` is the *sum* of the answer-token log-probs (NPO,
DPO, IDK's AP); KL is :func:`bench.training.kl_to_reference` (KL(ref ‖ θ) per position,
all positions, the reference codes' ``batchmean`` on [B·T, V]) unless
``kl_direction="theta||ref"``. Loss terms are logged per step under their names
(``forget``, ``gd`` / ``kl`` / ``ap``) next to the total.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bench.errors import BenchError
from bench.items import Item
from bench.model_bundle import ModelBundle
from bench.registry import METHODS
from bench.training import TrainOptions, batch_nll, kl_to_reference, token_mean_nll, train

# closer-look (seed 004): lr 1e-5, 5 epochs, effective batch 32, max length 500, 1 warm-up epoch
CLOSER_LOOK = TrainOptions(lr=1e-5, epochs=5, batch_size=8, grad_accum=4, weight_decay=0.01,
                           warmup_epochs=1.0, max_length=500)
REGULARISERS = ("gd", "kl", "ap")


def register(name: str, description: str, source: str, **attrs: Any) -> Callable[[Any], Any]:
    """``METHODS.register(name, description)`` that also sets ``fn.source`` (the paper) and
    any ``attrs`` (e.g. ``needs_original=True``)."""

    def deco(fn: Any) -> Any:
        fn.source = source
        for k, v in attrs.items():
            setattr(fn, k, v)
        return METHODS.register(name, description)(fn)

    return deco


def refusals_of(ctx: Any, method: str) -> list[str]:
    """The task's refusal templates (``ctx.refusals``); BenchError when there are none."""
    refusals = list(getattr(ctx, "refusals", None) or [])
    if not refusals:
        raise BenchError(f"method '{method}' needs refusal templates (idontknow.jsonl); the task gives none")
    return refusals


def logp(module: Any, batch: Any) -> Any:
    """log p(y|x): per-sequence sum of answer-token log-probs, Tensor[B]."""
    return -batch_nll(module, batch)


def npo_loss(logp_theta: Any, ref_logp: Any, beta: float) -> Any:
    """−(2/β)·mean log σ(−β·(logp − ref_logp)) for per-sequence summed log-probs [B]."""
    import torch.nn.functional as F

    return -(2.0 / beta) * F.logsigmoid(-beta * (logp_theta - ref_logp)).mean()


def dpo_loss(chosen: Any, rejected: Any, ref_chosen: Any, ref_rejected: Any, beta: float) -> Any:
    """−(2/β)·mean log σ(β·((c − r) − (c_ref − r_ref))) (closer-look / open-unlearning)."""
    import torch.nn.functional as F

    return -(2.0 / beta) * F.logsigmoid(beta * ((chosen - rejected) - (ref_chosen - ref_rejected))).mean()


def ap_loss(logp_refusal: Any, logp_answer: Any, beta: float) -> Any:
    """Answer preservation: −(1/β)·mean log σ(−β·(log p(y'|x) − log p(y|x))), y' a refusal."""
    import torch.nn.functional as F

    return -(1.0 / beta) * F.logsigmoid(-beta * (logp_refusal - logp_answer)).mean()


def regulariser(kind: str, module: Any, b: Any, *, ap_beta: float, kl_direction: str) -> Any:
    if kind == "gd":
        return token_mean_nll(module, b["retain"])
    if kind == "kl":
        return kl_to_reference(module, b["retain"], b.ref, kl_direction)
    if kind == "ap":
        return ap_loss(logp(module, b["retain_idk"]), logp(module, b["retain"]), ap_beta)
    raise BenchError(f"unknown regulariser {kind!r} (one of {', '.join(REGULARISERS)})")


def unlearn_with(
    model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], opts: TrainOptions,
    forget_term: Callable[[Any, Any], Any], *, reg: str | None, desc: str, gamma: float = 1.0,
    alpha: float = 1.0, fixed_ref: Sequence[str] = (), views: dict[str, str] | None = None,
    refusals: Sequence[str] = (), reference: bool = False, ap_beta: float = 0.1,
    kl_direction: str = "ref||theta", **train_kwargs: Any,
) -> ModelBundle:
    """Train ``gamma·forget_term + alpha·regulariser(reg)`` on (forget, retain)."""
    views = dict(views or {})
    if reg == "ap":
        views["retain_idk"] = "retain"
    splits = {"forget": forget, "retain": retain} if reg else {"forget": forget}

    def loss(module: Any, b: Any) -> Any:
        f = forget_term(module, b)
        out = {"forget": f.detach()}
        total = gamma * f
        if reg:
            r = regulariser(reg, module, b, ap_beta=ap_beta, kl_direction=kl_direction)
            out[reg] = r.detach()
            total = total + alpha * r
        return {"loss": total, **out}

    train(model, loss, splits, opts, desc=desc, fixed_ref=fixed_ref, views=views,
          refusals=refusals if views else (), reference=reference or reg == "kl", **train_kwargs)
    return model
