"""NPO with LoRA: seed 001's regularised NPO, and seed 000's two-run TIES merge.

``npo-lora`` (seed 001): ``NPO + γ·NLL(retain) + δ·KL(ref ‖ θ) on retain`` with LoRA
(r = α = 5) on the attention projections, β = 0.5, lr 1e-4, γ = 1, δ = 0.5, batch 4,
20 epochs, AdamW. The reference — NPO's ``log p_ref`` and the KL target — is the same
network with its adapters disabled (``ref_source="adapters_off"``): one copy of the base
weights; ``"precomputed"`` takes ``log p_ref`` from the request backend before training
instead (the same numbers: LoRA starts with B = 0).

``npo-gdr-klr-ties`` (seed 000, ZJUKLAB): two LoRA runs (r = 32, α = 32, dropout 0.05,
every linear layer but ``lm_head``, lr 1e-4, 5 epochs, 1 warm-up epoch, weight decay 0.01,
max length 256, batch 1 resp. 2 × accumulation 4) of ``a·NPO + b·KL(retain) + c·NLL(retain)``
with (a, b, c) = (0.4, 0.4, 0.2) and (0.3, 0.3, 0.4) — the authors' code's
``ga_ratio·npo + gd_ratio·kl_r + gk_ratio·nll_r`` — where NPO is computed on the
batch-mean token NLL: ``−(2/β)·log σ(−β·(NLL_θ(batch) − NLL_ref(batch)))``, β = 0.1, the
reference NLL fixed per batch (precomputed per example through the request backend and
pooled over the batch's answer tokens). The two adapters are merged with peft's
``add_weighted_adapter`` (TIES, density 0.8, weights [1, 1]; ``linear``, ``dare_linear``,
``dare_ties``, ``magnitude_prune`` as options; :mod:`bench.lora`), then folded into plain
weights (``merge_and_unload``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

from bench.errors import BenchError
from bench.items import Item
from bench.methods._common import logp, npo_loss, register
from bench.model_bundle import ModelBundle
from bench.training import IGNORE, TrainOptions, kl_to_reference, token_mean_nll
from bench.training import train as run_training

SEED001 = TrainOptions(lr=1e-4, epochs=20, batch_size=4, grad_accum=1, warmup_epochs=0.0, lora_r=5,
                       lora_alpha=5.0, lora_targets="q_proj,k_proj,v_proj,o_proj")
SEED000 = TrainOptions(lr=1e-4, epochs=5, batch_size=1, grad_accum=4, warmup_epochs=1.0, weight_decay=0.01,
                       max_length=256, lora_r=32, lora_alpha=32.0, lora_dropout=0.05, lora_targets="all-linear")


@register("npo-lora", "NPO + gamma*NLL(retain) + delta*KL(retain) with LoRA; reference = adapters disabled",
          "seed 001 (SemEval-2025, NPO with LoRA)")
def npo_lora(model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], *,
             beta: float = 0.5, gamma: float = 1.0, delta: float = 0.5,
             ref_source: Literal["adapters_off", "precomputed"] = "adapters_off",
             train: TrainOptions = SEED001) -> ModelBundle:
    if not train.lora_r:
        raise BenchError("npo-lora trains LoRA adapters: lora_r must be > 0")

    def loss(module, b):
        ref = b["forget"]["ref_logp"] if ref_source == "precomputed" else b.ref.sum_logprob(b["forget"])
        f = npo_loss(logp(module, b["forget"]), ref, beta)
        nll = token_mean_nll(module, b["retain"])
        kl = kl_to_reference(module, b["retain"], b.ref)
        return {"loss": f + gamma * nll + delta * kl, "forget": f.detach(), "gd": nll.detach(), "kl": kl.detach()}

    run_training(model, loss, {"forget": forget, "retain": retain}, train, reference=True, desc="npo-lora",
                 fixed_ref=("forget",) if ref_source == "precomputed" else ())
    return model


def batch_npo(module, batch, beta: float):
    """Seed 000's NPO on the batch-mean token NLL, the reference NLL pooled from ``ref_logp``."""
    import torch.nn.functional as F

    nll = token_mean_nll(module, batch)
    n_tok = (batch["labels"][:, 1:] != IGNORE).sum().clamp(min=1)
    ref_nll = -batch["ref_logp"].sum() / n_tok
    return -(2.0 / beta) * F.logsigmoid(-beta * (nll - ref_nll))


@register("npo-gdr-klr-ties", "Two LoRA runs of a*NPO + b*KL(retain) + c*NLL(retain), TIES-merged",
          "seed 000 (ZJUKLAB, SemEval-2025)")
def npo_gdr_klr_ties(model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], *,
                     beta: float = 0.1, npo_1: float = 0.4, kl_1: float = 0.4, nll_1: float = 0.2,
                     npo_2: float = 0.3, kl_2: float = 0.3, nll_2: float = 0.4, batch_size_2: int = 2,
                     merge: Literal["ties", "linear", "dare_linear", "dare_ties", "magnitude_prune"] = "ties",
                     density: float = 0.8, merge_weight_1: float = 1.0, merge_weight_2: float = 1.0,
                     train: TrainOptions = SEED000) -> ModelBundle:
    from bench.lora import combine
    from bench.lora import merge as merge_lora

    if not train.lora_r:
        raise BenchError("npo-gdr-klr-ties merges LoRA adapters: lora_r must be > 0")
    if batch_size_2 < 1:
        raise BenchError(f"batch_size_2 must be at least 1, got {batch_size_2}")

    def objective(a: float, b_: float, c: float):
        def loss(module, b):
            f = batch_npo(module, b["forget"], beta)
            kl = kl_to_reference(module, b["retain"], b.ref)
            nll = token_mean_nll(module, b["retain"])
            return {"loss": a * f + b_ * kl + c * nll, "forget": f.detach(), "kl": kl.detach(), "gd": nll.detach()}

        return loss

    splits = {"forget": forget, "retain": retain}
    run_training(model, objective(npo_1, kl_1, nll_1), splits, train, reference=True, fixed_ref=("forget",),
                 keep_adapters=True, adapter_name="run1", desc="npo-gdr-klr-ties run 1")
    run_training(model, objective(npo_2, kl_2, nll_2), splits, replace(train, batch_size=batch_size_2),
                 reference=True, fixed_ref=("forget",), keep_adapters=True, adapter_name="run2",
                 desc="npo-gdr-klr-ties run 2")
    combine(model.module, ["run1", "run2"], [merge_weight_1, merge_weight_2], merge, density)
    model.module = merge_lora(model.module)
    return model
