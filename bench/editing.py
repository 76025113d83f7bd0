"""Model editing with task vectors: TV and parameter-wise weighted model editing (WME, seed 002).

    θ_final = θ_full − scale · W ⊙ (θ_fgt − θ0)

* ``θ_full`` — the model to unlearn (the bundle's module, edited in place);
* ``θ0`` — the original model before fine-tuning on the task; ``θ_fgt`` — θ0 fine-tuned on
  the forget set (so ``θ_fgt − θ0`` is the forget-only task vector);
* ``W`` — per parameter: 1 for TV; for WME :func:`wme_weight`.

Gradients (:func:`dataset_gradients`) are the gradient of the dataset-mean loss,
``(1/N)·Σ_i NLL_i`` with ``NLL_i`` the mean answer-token NLL of example i (prompt tokens
masked), accumulated over micro-batches in one pass; with ``fraction < 1`` a seeded random
subset of ⌈fraction·N⌉ examples is used. So τ = 2 squares the aggregated gradient (not a
per-sample Fisher). ε is added to both |g|^τ terms as in the paper; it is absolute, so W
depends on the loss scale: with mean (not summed) NLL, typical |g| of a 1B model are
1e-8…1e-3, and the default ε = 1e-20 only matters where both gradients are (near) zero,
where W → 1/2.

Memory: the gradients and θ0 are written to a temporary directory (safetensors) and read
back one tensor at a time, so the edit itself holds θ_full, θ_fgt and one tensor of each
of θ0, g_f, g_r; fine-tuning θ0 holds one model with its optimizer state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.items import Item
from bench.model_bundle import ModelBundle

WEIGHTINGS = ("ratio", "softmax", "constant", "random", "pruning")


def wme_weight(g_f: Any, g_r: Any, *, tau: float = 1.0, eps: float = 1e-20, weighting: str = "ratio",
               omega: float = 0.5, prune_fraction: float = 0.5, task_vector: Any = None,
               generator: Any = None) -> Any:
    """The edit weights W for one tensor (float32, same shape as ``g_f``).

    * ``ratio`` (WME): ``(|g_f|^τ + ε) / (|g_f|^τ + |g_r|^τ + 2ε)`` — τ = 1 WME-grad,
      τ = 2 WME-fisher, τ = 0 gives 1/2 everywhere (``0^0 = 1``);
    * ``softmax``: ``exp(|g_f|) / (exp(|g_f|) + exp(|g_r|))`` = σ(|g_f| − |g_r|);
    * ``constant``: ω everywhere (ω = 1 is TV);
    * ``random``: U[0, 1) per entry from ``generator``;
    * ``pruning``: 0 on the ``prune_fraction`` entries of smallest |task vector| in this
      tensor (ties broken by position), 1 elsewhere (0 is TV).
    """
    import torch

    a, b = g_f.detach().float().abs(), g_r.detach().float().abs()
    if a.shape != b.shape:
        raise BenchError(f"wme: gradient shapes differ ({tuple(a.shape)} vs {tuple(b.shape)})")
    if weighting == "ratio":
        if tau < 0:
            raise BenchError(f"wme: tau must be >= 0, got {tau}")
        if eps < 0:
            raise BenchError(f"wme: eps must be >= 0, got {eps}")
        fa, fb = a.pow(tau), b.pow(tau)
        den = fa + fb + 2 * eps
        return torch.where(den > 0, (fa + eps) / den.clamp(min=torch.finfo(torch.float32).tiny),
                           torch.full_like(fa, 0.5))
    if weighting == "softmax":
        return torch.sigmoid(a - b)
    if weighting == "constant":
        return torch.full_like(a, float(omega))
    if weighting == "random":
        return torch.rand(a.shape, generator=generator)
    if weighting == "pruning":
        if task_vector is None:
            raise BenchError("wme: pruning needs the task vector")
        if not 0 <= prune_fraction <= 1:
            raise BenchError(f"wme: prune_fraction must be in [0, 1], got {prune_fraction}")
        flat = task_vector.detach().float().abs().flatten()
        k = int(math.floor(prune_fraction * flat.numel()))
        w = torch.ones_like(flat)
        if k:
            w[torch.argsort(flat, stable=True)[:k]] = 0.0
        return w.view(task_vector.shape)
    raise BenchError(f"wme: weighting '{weighting}' is not one of {', '.join(WEIGHTINGS)}")


def dataset_gradients(bundle: ModelBundle, items: Sequence[Item], *, fraction: float = 1.0, seed: int = 0,
                      max_length: int = 512, batch_size: int = 8, device: Any = None) -> dict[str, Any]:
    """``{parameter name: gradient}`` (float32, CPU) of the dataset-mean loss (module
    docstring) at the module's current weights; the module is not changed and is left with
    no gradients."""
    import torch

    from bench.training import batch_nll, collate, encode_pairs, pad_id

    if not 0 < fraction <= 1:
        raise BenchError(f"sample fraction must be in (0, 1], got {fraction}")
    if not items:
        raise BenchError("cannot take a gradient over an empty split")
    module = bundle.module
    if device is not None:
        module.to(device)
    dev = next(module.parameters()).device
    n = math.ceil(fraction * len(items))
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()[:n]
    chosen = [items[i] for i in sorted(order)]
    enc = encode_pairs(bundle, chosen, max_length)
    pad = pad_id(bundle.tokenizer)
    was_training = module.training
    module.eval()  # no dropout: the gradient of the model as it answers
    params = {name: p for name, p in module.named_parameters() if p.requires_grad}
    for p in params.values():
        p.grad = None
    try:
        for i in range(0, n, batch_size):
            batch = {k: v.to(dev) for k, v in collate(enc[i:i + batch_size], pad).items()}
            loss = batch_nll(module, batch, "mean").sum() / n
            loss.backward()
        out = {name: (p.grad.detach().float().cpu().clone() if p.grad is not None else torch.zeros_like(p, device="cpu"))
               for name, p in params.items()}
    finally:
        for p in params.values():
            p.grad = None
        module.train(was_training)
    return out


def save_tensors(tensors: dict[str, Any], path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


class LazyTensors:
    """One tensor at a time from a safetensors file (``get(name)`` → CPU tensor)."""

    def __init__(self, path: Path):
        from safetensors import safe_open

        self._f = safe_open(str(path), framework="pt", device="cpu")
        self.names = set(self._f.keys())

    def get(self, name: str) -> Any:
        if name not in self.names:
            raise BenchError(f"tensor {name!r} missing from the saved tensors")
        return self._f.get_tensor(name)


def apply_edit(target: Any, finetuned: Any, original: LazyTensors,
               weight: Callable[[str, Any], Any] | None, scale: float = 1.0) -> dict[str, float]:
    """``target ← target − scale · W ⊙ (finetuned − original)``, parameter by parameter, in
    place; ``weight(name, task_vector)`` gives W (None: TV, W = 1). Returns, per parameter,
    the mean of W (a summary for the run's log)."""
    import torch

    fin = dict(finetuned.named_parameters())
    stats: dict[str, float] = {}
    with torch.no_grad():
        for name, p in target.named_parameters():
            if name not in fin:
                raise BenchError(f"edit: the fine-tuned model has no parameter '{name}' (another architecture?)")
            tv = fin[name].detach().float().cpu() - original.get(name).float()
            if tv.shape != p.shape:
                raise BenchError(f"edit: parameter '{name}' has shape {tuple(tv.shape)} vs {tuple(p.shape)}")
            w = weight(name, tv) if weight is not None else None
            delta = tv if w is None else w * tv
            p.sub_((scale * delta).to(device=p.device, dtype=p.dtype))
            stats[name] = 1.0 if w is None else float(w.mean())
    return stats
