"""LoRA through ``peft``: wrapping a module for training, merging adapters, saving plain weights.

* :func:`wrap` puts LoRA adapters (rank ``lora_r``, ``lora_alpha``, ``lora_dropout``) on
  ``lora_targets``: ``"all-linear"`` (peft's: every linear layer but the output head) or
  comma-separated module-name suffixes (``q_proj,k_proj,v_proj,o_proj``). The base
  weights are frozen; peft initialises B = 0, so the wrapped network starts equal to the
  incoming model and, with its adapters disabled, stays equal to it (the reference).
* :func:`merge` folds the active adapter into the base weights and returns the plain
  transformers model (``merge_and_unload``), its weights trainable again (a later step of
  a continual run trains it): run directories and the vLLM hand-over hold plain weights.
* :func:`combine` merges several trained adapters into one with peft's
  ``add_weighted_adapter`` (``ties``, ``linear``, ``dare_linear``, ``dare_ties``,
  ``magnitude_prune``). For these types peft merges the A and the B matrices *separately*
  (each adapter's A weighted by ``sign(w)·sqrt(|w·s|)``, its B by ``sqrt(|w·s|)``, with
  ``s = lora_alpha / r`` its scaling) into a new adapter of the same rank with scaling 1,
  so the merged update is ``B_merged @ A_merged`` — not a merge of the products B·A.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.errors import BenchError

COMBINATIONS = ("ties", "linear", "dare_linear", "dare_ties", "magnitude_prune")


def is_peft(model: Any) -> bool:
    """Whether ``model`` is a peft wrapper (adapters on a base model)."""
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


def targets(spec: str) -> str | list[str]:
    """peft ``target_modules`` for a ``lora_targets`` option string."""
    spec = spec.strip()
    if spec in ("all-linear", "all_linear"):
        return "all-linear"
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise BenchError("lora_targets is empty (give all-linear or module names like q_proj,v_proj)")
    return names


def config(opts: Any) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=int(opts.lora_r), lora_alpha=float(opts.lora_alpha), lora_dropout=float(opts.lora_dropout),
                      target_modules=targets(opts.lora_targets), bias="none", task_type="CAUSAL_LM")


def wrap(module: Any, opts: Any, adapter_name: str = "default") -> Any:
    """``module`` with a new trainable LoRA adapter ``adapter_name`` (a PeftModel); a module
    that is already a PeftModel gets the adapter added and made active."""
    try:
        from peft import get_peft_model
    except ImportError as e:  # pragma: no cover - peft is a dependency
        raise BenchError("LoRA options need the 'peft' package") from e
    cfg = config(opts)
    try:
        if hasattr(module, "peft_config"):
            module.add_adapter(adapter_name, cfg)
            module.set_adapter(adapter_name)
            return module
        return get_peft_model(module, cfg, adapter_name=adapter_name)
    except ValueError as e:
        raise BenchError(f"lora_targets={opts.lora_targets!r}: {str(e).splitlines()[0]}") from None


def merge(module: Any) -> Any:
    """The plain model with the active adapter merged in (no-op for a plain model)."""
    if not hasattr(module, "merge_and_unload"):
        return module
    out = module.merge_and_unload()
    out.requires_grad_(True)  # peft froze the base weights; the plain model is trainable again
    out.eval()
    return out


def combine(module: Any, adapters: Sequence[str], weights: Sequence[float], combination: str = "ties",
            density: float = 0.8, majority_sign: str = "total", name: str = "merged") -> Any:
    """Add adapter ``name`` = ``add_weighted_adapter(adapters, weights, combination, density)``
    to PeftModel ``module``, make it the only active one, and return ``module``."""
    if combination not in COMBINATIONS:
        raise BenchError(f"merge '{combination}' is not one of {', '.join(COMBINATIONS)}")
    if not 0 < density <= 1:
        raise BenchError(f"merge density must be in (0, 1], got {density}")
    kwargs: dict[str, Any] = {"combination_type": combination}
    if combination != "linear":
        kwargs["density"] = density
    if combination in ("ties", "dare_ties"):
        kwargs["majority_sign_method"] = majority_sign
    module.add_weighted_adapter(list(adapters), list(weights), name, **kwargs)
    module.set_adapter(name)
    for a in adapters:
        module.delete_adapter(a)
    return module
