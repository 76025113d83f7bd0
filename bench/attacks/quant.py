"""Quantization attack (Zhang et al., ICLR 2025, "Catastrophic failure of LLM unlearning via
quantization"): quantize the unlearned model's linear weights and evaluate again.

``quant-4bit`` / ``quant-8bit``: round-to-nearest (RTN) weight quantization of every linear
layer (``torch.nn.Linear``, and transformers' ``Conv1D`` transposed), the output embedding
(``lm_head``) left out by default as GPTQ/AWQ do (with tied embeddings it *is* the input
embedding). The weights are written back **de-quantised** (float, on the grid), so every
backend (hf, vllm) evaluates the quantized model unchanged.

Convention (GPTQ's ``Quantizer``, ``sym=False`` by default): the weight matrix ``[out, in]``
is cut into groups of ``group_size`` consecutive input columns per output row
(``group_size=0``: one group per output channel, i.e. the whole row; a last group shorter
when ``in`` is not a multiple). Per group, with ``maxq = 2^bits − 1``:

* asymmetric: ``xmin = min(min w, 0)``, ``xmax = max(max w, 0)`` (so 0 is on the grid),
  ``scale = (xmax − xmin) / maxq``, ``zero = round(−xmin / scale)``;
* symmetric: ``xmax = max |w|``, ``scale = 2·xmax / maxq``, ``zero = (maxq + 1) / 2``;
* a group of zeros gets ``xmin, xmax = −1, 1`` (GPTQ's guard);
* ``q = clamp(round(w / scale) + zero, 0, maxq)``, ``w' = scale · (q − zero)``.

So each group holds at most ``2^bits`` distinct values, evenly spaced by ``scale``, and
``|w − w'| <= scale / 2`` inside the range. Tensors are quantized in float32 and cast back
to the layer's dtype.

``engine=bnb``: bitsandbytes' own quantizers (NF4 / FP4 blockwise 4-bit with
``blocksize=group_size`` or 64, LLM.int8's row-wise absmax 8-bit), the paper's setting,
also written back de-quantised. It needs bitsandbytes and a CUDA GPU; elsewhere it is a
one-line error at plan time.

Note: the ``smollm2-135m`` alias was itself de-quantised from a 4-bit GGUF
(``Q4_1``): its weights already sit on a 4-bit grid (GGUF's blocks of 32), so 4-bit
RTN with other groups moves them, but less than it moves a model trained in float.
"""

from __future__ import annotations

from typing import Any, Literal

from bench.attacks.base import Attack, AttackContext
from bench.errors import BenchError
from bench.registry import ATTACKS


def rtn_grid(w: Any, bits: int, group_size: int = 0, symmetric: bool = False) -> tuple[Any, Any, Any]:
    """``(q, scale, zero)`` of 2-D tensor ``w`` ``[out, in]`` by the module's convention:
    ``q`` integer levels in ``[0, 2^bits − 1]`` (same shape as ``w``), ``scale`` and
    ``zero`` per element's group (broadcast to ``w``'s shape)."""
    import torch

    if w.dim() != 2:
        raise ValueError(f"rtn_grid expects a 2-D weight, got shape {tuple(w.shape)}")
    if bits < 2 or bits > 16:
        raise ValueError(f"bits must be between 2 and 16, got {bits}")
    if group_size < 0:
        raise ValueError(f"group_size must be >= 0 (0: per output channel), got {group_size}")
    x = w.detach().float()
    out_f, in_f = x.shape
    g = in_f if group_size == 0 else min(group_size, in_f)
    maxq = 2 ** bits - 1
    qs, scales, zeros = [], [], []
    for start in range(0, in_f, g):
        part = x[:, start:start + g]
        if symmetric:
            xmax = part.abs().amax(dim=1)
            xmin = -xmax
        else:
            xmin = part.amin(dim=1).clamp(max=0)
            xmax = part.amax(dim=1).clamp(min=0)
        dead = (xmin == 0) & (xmax == 0)
        xmin = torch.where(dead, torch.full_like(xmin, -1.0), xmin)
        xmax = torch.where(dead, torch.full_like(xmax, 1.0), xmax)
        scale = (xmax - xmin) / maxq
        if symmetric:
            zero = torch.full_like(scale, (maxq + 1) / 2)
        else:
            zero = torch.round(-xmin / scale)
        q = torch.clamp(torch.round(part / scale[:, None]) + zero[:, None], 0, maxq)
        qs.append(q)
        scales.append(scale[:, None].expand_as(part))
        zeros.append(zero[:, None].expand_as(part))
    return torch.cat(qs, 1), torch.cat(scales, 1), torch.cat(zeros, 1)


def rtn_dequantize(w: Any, bits: int, group_size: int = 0, symmetric: bool = False) -> Any:
    """``w`` quantized by :func:`rtn_grid` and de-quantised: ``scale · (q − zero)``, float32."""
    q, scale, zero = rtn_grid(w, bits, group_size, symmetric)
    return scale * (q - zero)


def _bnb_dequantize(w: Any, bits: int, blocksize: int, quant_type: str) -> Any:  # pragma: no cover - GPU only
    import bitsandbytes.functional as bf
    import torch

    x = w.detach().to("cuda", torch.float16 if bits == 8 else torch.float32)
    if bits == 4:
        q, state = bf.quantize_4bit(x, blocksize=blocksize, quant_type=quant_type)
        return bf.dequantize_4bit(q, state).float().cpu()
    if hasattr(bf, "int8_vectorwise_quant"):  # bitsandbytes >= 0.45: LLM.int8 row-wise absmax
        q, stats, _ = bf.int8_vectorwise_quant(x)
        return (q.float() * stats.float()[:, None] / 127.0).cpu()
    q, state = bf.quantize_blockwise(x.float(), blocksize=blocksize)
    return bf.dequantize_blockwise(q, state).float().cpu()


def linear_weights(module: Any, lm_head: bool = False) -> list[tuple[str, Any, bool]]:
    """``[(name, weight parameter, transposed)]`` of the linear layers of ``module``
    (``torch.nn.Linear``; transformers' ``Conv1D`` stores ``[in, out]``: transposed),
    the output embedding left out unless ``lm_head``; a tied weight is listed once."""
    import torch

    out_emb = module.get_output_embeddings() if hasattr(module, "get_output_embeddings") else None
    skip = {id(out_emb.weight)} if (out_emb is not None and not lm_head) else set()
    seen: set[int] = set()
    found = []
    for name, sub in module.named_modules():
        is_conv1d = type(sub).__name__ == "Conv1D"
        if not isinstance(sub, torch.nn.Linear) and not is_conv1d:
            continue
        wt = sub.weight
        if id(wt) in skip or id(wt) in seen:
            continue
        seen.add(id(wt))
        found.append((name, wt, is_conv1d))
    return found


class Quantize(Attack):
    """Round-to-nearest weight quantization of the linear layers, de-quantised."""

    kind = "model"
    bits = 4

    def __init__(self, group_size: int = 128, symmetric: bool = False,
                 engine: Literal["rtn", "bnb"] = "rtn", lm_head: bool = False,
                 bnb_type: Literal["nf4", "fp4"] = "nf4") -> None:
        super().__init__()
        if group_size < 0:
            raise ValueError(f"group_size must be >= 0 (0: per output channel), got {group_size}")
        self.group_size = group_size
        self.symmetric = symmetric
        self.engine = engine
        self.lm_head = lm_head
        self.bnb_type = bnb_type

    def options(self) -> dict[str, Any]:
        return {**super().options(), "bits": self.bits}

    def check(self, data: Any, eval_sets: Any) -> None:
        if self.engine == "bnb":
            import torch

            try:
                import bitsandbytes  # noqa: F401
            except ImportError:
                raise BenchError(f"attack '{self.name}': engine=bnb needs bitsandbytes (pip install "
                                 "bitsandbytes) and a CUDA GPU; use engine=rtn") from None
            if not torch.cuda.is_available():
                raise BenchError(f"attack '{self.name}': engine=bnb needs a CUDA GPU (bitsandbytes' "
                                 "quantizers do not run on this CPU); use engine=rtn")

    def apply(self, bundle: Any, ctx: AttackContext) -> Any:
        import torch

        layers = linear_weights(bundle.module, self.lm_head)
        if not layers:
            raise BenchError(f"attack '{self.name}': the model has no linear layers to quantize")
        n_params, moved, rel = 0, 0, []
        with torch.no_grad():
            for _, wt, transposed in layers:
                w = wt.t() if transposed else wt
                if self.engine == "bnb":
                    deq = _bnb_dequantize(w, self.bits, self.group_size or 64, self.bnb_type)
                else:
                    deq = rtn_dequantize(w, self.bits, self.group_size, self.symmetric)
                deq = deq.to(w.dtype).to(w.device)
                diff = (deq.float() - w.float())
                n_params += w.numel()
                moved += int((diff != 0).sum())
                rel.append(float(diff.norm() / w.float().norm().clamp(min=1e-12)))
                (wt.copy_(deq.t()) if transposed else wt.copy_(deq))
        self.info = {"layers": len(layers), "params": n_params, "params_changed": moved,
                     "mean_relative_error": sum(rel) / len(rel), "max_relative_error": max(rel)}
        ctx.log(f"attack {self.name}: {len(layers)} linear layers, {n_params} weights "
                f"({moved} changed), mean relative error {self.info['mean_relative_error']:.4f}")
        return bundle


@ATTACKS.register("quant-4bit")
class Quant4(Quantize):
    """4-bit round-to-nearest weight quantization (groups of 128 by default), de-quantised"""

    name = "quant-4bit"
    description = "4-bit round-to-nearest quantization of the linear weights (de-quantised; engine=bnb: NF4)"
    bits = 4


@ATTACKS.register("quant-8bit")
class Quant8(Quantize):
    """8-bit round-to-nearest weight quantization (groups of 128 by default), de-quantised"""

    name = "quant-8bit"
    description = "8-bit round-to-nearest quantization of the linear weights (de-quantised; engine=bnb: LLM.int8)"
    bits = 8
