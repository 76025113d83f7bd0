"""Representation misdirection for unlearning, RMU (Li et al. 2024, WMDP), as in open-unlearning.

    rmu = γ · act_loss(h_θ(forget), c) + α · act_loss(h_θ(retain), h_ref(retain))

``h`` is the output hidden state of decoder layer ``layer`` (open-unlearning's
``module_regex: model.layers.7``); ``c`` is a fixed random control vector
``u / ‖u‖ · steering_coeff`` with ``u ~ U[0, 1)^d`` (drawn once from ``seed``);
``act_loss(a, b)`` = mean over the batch of (Σ_answer tokens mean_d (a − b)²) / (number of
answer tokens) (open-unlearning's ``compute_activation_loss``; the mask is the answer-token
labels). ``h_ref`` is the incoming model (a frozen copy; with LoRA the adapters-off
network). Defaults: open-unlearning's ``RMU`` config — γ = 1, α = 1, steering_coeff = 2,
layer 7, every parameter trainable (``trainable=".*"``; the WMDP code trains
``model.layers.(5|6|7).mlp.down_proj.weight``) — on its TOFU training settings. A model
with fewer layers uses its last layer (the layer used is in the training log).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from bench.errors import BenchError
from bench.items import Item
from bench.methods._common import register
from bench.model_bundle import ModelBundle
from bench.training import IGNORE, TOFU, TrainOptions
from bench.training import train as run_training


def activation_loss(a, b, mask):
    """open-unlearning's ``compute_activation_loss``: per sequence Σ_masked mean_d (a−b)² /
    #masked, then the batch mean."""
    sq = ((a.float() - b.float()) ** 2).mean(dim=2)
    m = mask.to(sq.dtype)
    return ((sq * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)).mean()


def _layers(module: Any) -> Any:
    base = module.get_base_model() if hasattr(module, "get_base_model") else module
    inner = getattr(base, "model", base)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise BenchError("rmu: cannot find the decoder layers (model.model.layers) of this architecture")
    return layers


def _hidden(model: Any, layer_module: Any, batch: dict) -> Any:
    cache: list[Any] = []

    def hook(_m, _inp, out):
        cache.append(out[0] if isinstance(out, tuple) else out)

    h = layer_module.register_forward_hook(hook)
    try:
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    finally:
        h.remove()
    return cache[0]


@register("rmu", "RMU: steer layer-L activations on forget to a random vector, keep them on retain",
          "Li et al. 2024 (WMDP); open-unlearning RMU")
def rmu(model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item], *,
        layer: int = 7, steering_coeff: float = 2.0, gamma: float = 1.0, alpha: float = 1.0,
        trainable: str = ".*", train: TrainOptions = TOFU) -> ModelBundle:
    import torch

    try:
        pattern = re.compile(trainable)
    except re.error as e:
        raise BenchError(f"rmu: trainable={trainable!r} is not a regular expression: {e}") from None
    n_layers = len(_layers(model.module))
    used = min(layer, n_layers - 1)
    gen = torch.Generator().manual_seed(train.seed)
    hidden = model.module.config.hidden_size
    u = torch.rand(1, 1, hidden, generator=gen)
    control = u / torch.norm(u) * steering_coeff
    frozen = []
    if not train.lora_r:
        for name, p in model.module.named_parameters():
            if not pattern.fullmatch(name):
                p.requires_grad_(False)
                frozen.append(p)
        if len(frozen) == sum(1 for _ in model.module.parameters()):
            raise BenchError(f"rmu: trainable={trainable!r} matches no parameter")

    def loss(module, b):
        f, r = b["forget"], b["retain"]
        layer_mod = _layers(module)[used]
        h_f = _hidden(module, layer_mod, f)
        c = control.to(device=h_f.device, dtype=h_f.dtype).expand_as(h_f)
        lf = activation_loss(h_f, c, f["labels"] != IGNORE)
        h_r = _hidden(module, layer_mod, r)
        ref = b.ref
        with torch.no_grad(), (ref.module.disable_adapter() if not ref.holds_copy else _null()):
            h_ref = _hidden(ref.module, _layers(ref.module)[used], r)
        lr = activation_loss(h_r, h_ref, r["labels"] != IGNORE)
        return {"loss": gamma * lf + alpha * lr, "forget": lf.detach(), "retain_act": lr.detach()}

    try:
        log = run_training(model, loss, {"forget": forget, "retain": retain}, train, reference=True, desc="rmu")
    finally:
        for p in frozen:
            p.requires_grad_(True)
    log.options["rmu_layer_used"] = used
    model.provenance["training"][-1]["options"]["rmu_layer_used"] = used
    return model


def _null():
    import contextlib

    return contextlib.nullcontext()
