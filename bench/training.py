"""The one training loop every training-based method (and ``bench prepare``) shares.

Conventions
-----------
* Pairs are tokenised exactly as evaluation tokenises them: prompt =
  ``bundle.prompt.prompt(question, tokenizer)``, continuation =
  ``bundle.prompt.continuation(answer)``, ids by :func:`bench.model_bundle.tokenize_pairs`.
  Only continuation ("answer") tokens carry labels; prompt and padding are ``-100``.
  Sequences longer than ``max_length`` keep their first ``max_length`` tokens.
* Batches are right-padded (pad id: the tokenizer's pad, else EOS, else 0); the attention
  mask is 1 on the real tokens (built from lengths, so a pad id equal to EOS is harmless).
* Losses are natural-log NLLs of the answer tokens. :func:`batch_nll` gives one value per
  sequence, the *sum* over its answer tokens (open-unlearning's ``compute_batch_nll``; NPO
  uses it) or, with ``reduction="mean"``, the per-sequence mean. :func:`token_mean_nll`
  is the mean over all answer tokens of the batch, i.e. Hugging Face's ``outputs.loss``
  (GA, GD and fine-tuning use it, as open-unlearning's GradAscent/GradDiff do).
* :func:`train`: the anchor split (``"forget"`` if present, else the first) is shuffled
  every epoch and drives it; each anchor example is paired with a uniformly random example
  of every other split (open-unlearning's ``ForgetRetainDataset`` with ``anchor=forget``).
  AdamW (torch's; open-unlearning uses bitsandbytes' paged 32-bit AdamW, a GPU memory
  saver with the same update) with weight decay on matrices only (biases and norm weights
  excluded, as the Hugging Face Trainer does), gradient-norm clipping at 1.0 (the Trainer's
  default), a linear schedule with ``int(warmup_epochs · N // (batch_size · grad_accum))``
  warm-up steps (open-unlearning's ``warmup_epochs``), then linear decay to 0. A micro-batch
  loss is divided by the number of micro-batches in its accumulation group. Everything
  random is drawn from generators seeded by ``seed``: the same seed gives the same weights.
  The whole sampling plan (anchor order, partner rows, refusal indices) is drawn before the
  first step, so a method can precompute what it needs per example (fixed reference
  log-probabilities) for exactly the examples it will see.
* Training options are declared once, in :class:`TrainOptions`. A method takes them as one
  parameter ``train: TrainOptions = TrainOptions(...)`` (its own defaults); the option
  reader (:func:`bench.adapters.method_options`) shows the fields as flat options
  (``--set lr=... max_steps=...``) and :func:`bench.adapters.bind_options` regroups them.
* Loss functions: ``loss_fn(module, batches)`` returns a scalar tensor, or a mapping with
  the total under ``"loss"`` and any other named terms (logged per step, as floats, in
  ``TrainLog.terms``). ``batches`` is a :class:`Batches` (a dict ``split -> batch``) that
  also carries ``.ref`` (the reference, :class:`Reference`, when ``reference=True``) and
  ``.step``. A batch named in ``fixed_ref`` carries ``"ref_logp"``: Tensor[B] of the
  incoming model's summed answer log-probs, computed once before training through the
  ``hf`` request backend and its request cache (:func:`reference_logprobs`). Inside
  :func:`reference_model` both come from another model instead of the incoming one.
* Tuple examples: ``views={"forget_idk": "forget", "retain_idk": "retain"}`` adds batches
  holding the same rows' questions with the answer replaced by a refusal from
  ``refusals``; each row draws one refusal index afresh per draw, shared by all views of
  that row (IDK+AP's "same template on both sides"; DPO's chosen/rejected pair is the
  ``forget`` batch and its ``forget_idk`` view).
* Device and precision: ``device="auto"`` is CUDA when available; ``precision`` "bf16" /
  "fp16" runs the forward passes under autocast with the float32 weights as the master
  copy (fp16 adds a gradient scaler, CUDA only); a frozen reference copy is cast to that
  dtype. ``grad_checkpointing`` recomputes activations in the backward pass.
* LoRA: ``lora_r > 0`` trains peft LoRA adapters (``lora_alpha``, ``lora_dropout``,
  ``lora_targets``: ``all-linear`` or comma-separated module names) on frozen base
  weights and merges them into plain weights at the end; the reference is then the same
  network with its adapters disabled (no second copy). See :mod:`bench.lora`.
* Checkpoints: every ``checkpoint_every`` optimizer steps and/or at each epoch end
  (``checkpoint_each_epoch``), ``on_checkpoint(step, bundle)`` is called (argument, else
  the hook installed by :func:`training_hooks`, which may also set the cadence) with the
  module in eval mode; the hook must not modify the module (with LoRA it is the
  adapter-wrapped peft model). ``bench run --eval-every`` is such a hook (bench/curves.py).
* Early stopping (``early_stop_patience > 0``): ``early_stop_fraction`` of the anchor
  split is held out (a seeded choice), the method's loss is evaluated on it without
  gradients every ``eval_every`` steps (0: each epoch), and training stops after
  ``early_stop_patience`` evaluations without improvement; the held-out losses are logged.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from bench.answer_logits import answer_logits
from bench.errors import BenchError
from bench.items import Item, Split, split_format
from bench.lora import is_peft as _is_peft
from bench.model_bundle import ModelBundle, tokenize_pairs
from bench.prompts import default_bos
from bench.threads import model_threads

IGNORE = -100

Batch = dict[str, Any]  # input_ids, labels, attention_mask: LongTensor[B, T]
LossFn = Callable[[Any, "Batches"], Any]  # (module, {split: batch}) -> Tensor | {"loss": Tensor, term: Tensor}
CheckpointHook = Callable[[int, ModelBundle], None]


@dataclass(frozen=True)
class TrainOptions:
    """Shared training hyper-parameters; the defaults are open-unlearning's TOFU unlearning
    settings (``configs/trainer/finetune.yaml`` + ``configs/experiment/unlearn/tofu/default.yaml``:
    lr 1e-5, weight decay 0.01, batch 8 × accumulation 4, 10 epochs, 1 warm-up epoch, seed 0;
    ``max_length`` 512 from its ``TOFU_QA_*`` dataset configs)."""

    lr: float = 1e-5
    epochs: int = 10
    batch_size: int = 8
    grad_accum: int = 4
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    max_length: int = 512
    seed: int = 0
    max_steps: int | None = None  # stop after this many optimizer steps (cycling epochs as needed)
    optimizer: Literal["adamw", "paged_adamw_32bit"] = "adamw"
    max_grad_norm: float | None = 1.0
    device: str = "auto"  # auto: CUDA when available, else CPU
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    grad_checkpointing: bool = False
    early_stop_patience: int = 0  # 0: off
    early_stop_fraction: float = 0.1
    eval_every: int = 0  # held-out evaluation every N steps (0: each epoch)
    checkpoint_every: int = 0  # call on_checkpoint every N steps (0: never)
    checkpoint_each_epoch: bool = False
    lora_r: int = 0  # 0: full fine-tuning; > 0: peft LoRA of this rank, merged at the end
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: str = "all-linear"
    group_by_length: bool = False  # HF Trainer's: batches of similar lengths (less padding)

    def check(self) -> None:
        """BenchError naming the first option out of range."""
        for name in ("epochs", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise BenchError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.warmup_epochs < 0 or self.weight_decay < 0:
            raise BenchError(f"need lr > 0, warmup_epochs >= 0, weight_decay >= 0 "
                             f"(got {self.lr}, {self.warmup_epochs}, {self.weight_decay})")
        if self.max_steps is not None and self.max_steps < 1:
            raise BenchError(f"max_steps must be at least 1 (or none), got {self.max_steps}")
        if self.optimizer not in ("adamw", "paged_adamw_32bit"):
            raise BenchError(f"unknown optimizer '{self.optimizer}' (choose 'adamw' or 'paged_adamw_32bit')")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise BenchError(f"precision must be fp32, bf16 or fp16, got {self.precision!r}")
        if not 0 < self.early_stop_fraction < 1:
            raise BenchError(f"early_stop_fraction must be in (0, 1), got {self.early_stop_fraction}")
        if min(self.early_stop_patience, self.eval_every, self.checkpoint_every, self.lora_r) < 0:
            raise BenchError("early_stop_patience, eval_every, checkpoint_every and lora_r must be >= 0")


TOFU = TrainOptions()
TRAIN_FIELDS = tuple(f.name for f in fields(TrainOptions))


@dataclass
class TrainLog:
    """What a :func:`train` call did: optimizer steps, the loss of each step, timings."""

    desc: str
    steps: int
    warmup_steps: int
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    terms: dict[str, list[float]] = field(default_factory=dict)  # named loss terms per step
    heldout: list[tuple[int, float]] = field(default_factory=list)  # (step, held-out loss)
    stopped_early: bool = False
    peak_memory_bytes: int | None = None  # CUDA peak allocated during training

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out["losses"] = [round(x, 6) for x in self.losses]
        out["terms"] = {k: [round(x, 6) for x in v] for k, v in self.terms.items()}
        out["heldout"] = [[s, round(x, 6)] for s, x in self.heldout]
        return out


# ----------------------------------------------------------------------------- encoding


def encode_pairs(bundle: ModelBundle, items: Sequence[Item], max_length: int) -> list[dict[str, list[int]]]:
    """``[{"input_ids", "labels"}]`` for ``items``: prompt tokens labelled -100, answer
    tokens labelled with their ids, truncated to ``max_length`` tokens.

    The split's format (:func:`bench.items.split_format`) decides the text: ``"model"``
    (default) goes through the model's prompt config; ``"raw"`` is BOS (where the model
    uses one) + ``question`` as is, continuation ``answer`` verbatim; ``"chat"`` is the
    question as the chat template's user turn + ``meta["answer_lead"]``, continuation
    verbatim (:func:`bench.metrics.base.chat_prompt`); ``"document"`` texts
    (``answer``) are cut into consecutive ``max_length`` windows (not truncated), every
    token a label except a window's first (nothing predicts it).

    Raises BenchError when an item has no answer token left after truncation.
    """
    if max_length < 2:
        raise BenchError(f"max_length must be at least 2, got {max_length}")
    fmt = split_format(items)
    if fmt == "document":
        return encode_documents(bundle, items, max_length)
    bos = default_bos(bundle.tokenizer) if fmt == "raw" else ""
    texts = []
    for it in items:
        if fmt == "raw":
            prompt, cont = bos + it.question, it.answer
        elif fmt == "chat":
            from bench.metrics.base import chat_prompt

            prompt = chat_prompt(bundle.prompt, bundle.tokenizer, it.question, str(it.meta.get("answer_lead", "")))
            cont = it.answer
        else:
            prompt = bundle.prompt.prompt(it.question, bundle.tokenizer)
            cont = bundle.prompt.continuation(it.answer)
        texts.append((prompt, cont))
    out = []
    for it, (p_ids, c_ids) in zip(items, tokenize_pairs(bundle.tokenizer, texts)):
        ids = (p_ids + c_ids)[:max_length]
        labels = ([IGNORE] * len(p_ids) + c_ids)[:max_length]
        if all(lab == IGNORE for lab in labels):
            raise BenchError(
                f"item '{it.id}': no answer token within max_length={max_length} "
                f"(prompt has {len(p_ids)} tokens, answer {len(c_ids)})"
            )
        out.append({"input_ids": ids, "labels": labels})
    return out


def encode_documents(bundle: ModelBundle, items: Sequence[Item], max_length: int) -> list[dict[str, list[int]]]:
    """Texts (``item.answer``) as consecutive windows of at most ``max_length`` tokens,
    BOS first where the model uses one; every token is a label (the loss of a window
    starts at its second token). A long article becomes several examples."""
    bos = default_bos(bundle.tokenizer)
    out = []
    for it in items:
        ids = bundle.tokenizer(bos + it.answer, add_special_tokens=False)["input_ids"]
        for start in range(0, len(ids), max_length):
            window = list(ids[start:start + max_length])
            if len(window) >= 2:
                out.append({"input_ids": window, "labels": list(window)})
    if not out:
        raise BenchError("document split: no text with at least 2 tokens")
    return out


def pad_id(tokenizer: Any) -> int:
    """The id used for padding: the tokenizer's pad token, else EOS, else 0."""
    for tid in (getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if tid is not None:
            return int(tid)
    return 0


def collate(examples: Sequence[Mapping[str, Sequence[int]]], pad: int) -> Batch:
    """Right-pad ``examples`` into ``input_ids`` (pad id ``pad``), ``labels`` (-100 on
    padding) and ``attention_mask`` (1 on real tokens) LongTensors of shape [B, T]."""
    import torch

    if not examples:
        raise BenchError("cannot collate an empty batch")
    width = max(len(e["input_ids"]) for e in examples)
    n = len(examples)
    ids = torch.full((n, width), pad, dtype=torch.long)
    labels = torch.full((n, width), IGNORE, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for i, e in enumerate(examples):
        k = len(e["input_ids"])
        ids[i, :k] = torch.tensor(e["input_ids"], dtype=torch.long)
        labels[i, :k] = torch.tensor(e["labels"], dtype=torch.long)
        mask[i, :k] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


# ----------------------------------------------------------------------------- losses


def token_nll(model: Any, batch: Batch) -> tuple[Any, Any]:
    """Per-token answer NLL ``[B, T-1]`` (0 where unlabelled) and the label mask ``[B, T-1]``.

    Position t scores token t+1 given tokens ≤ t; logits are upcast to float32. Only the
    labelled positions go through the LM head and the softmax, and through the last layer's
    queries and MLP (:func:`bench.answer_logits.answer_logits`).
    """
    import torch
    import torch.nn.functional as F

    labels = batch["labels"][:, 1:]
    mask = labels != IGNORE
    logits = answer_logits(model, batch, mask)
    if logits is None:  # the model's own forward, every position
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        return F.cross_entropy(full[:, :-1].float().transpose(1, 2), labels, ignore_index=IGNORE,
                               reduction="none"), mask
    nll = torch.zeros(labels.shape, dtype=torch.float32, device=labels.device)
    nll[mask] = F.cross_entropy(logits.float(), labels[mask], reduction="none")
    return nll, mask


def batch_nll(model: Any, batch: Batch, reduction: str = "sum") -> Any:
    """Per-sequence answer NLL, Tensor[B]: the ``"sum"`` over answer tokens (= −log p(y|x),
    open-unlearning's ``compute_batch_nll``) or their ``"mean"``."""
    nll, mask = token_nll(model, batch)
    total = nll.sum(dim=1)
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / mask.sum(dim=1).clamp(min=1)
    raise BenchError(f"batch_nll reduction must be 'sum' or 'mean', got {reduction!r}")


def token_mean_nll(model: Any, batch: Batch) -> Any:
    """Mean NLL over all answer tokens of the batch (Hugging Face's ``outputs.loss``)."""
    nll, mask = token_nll(model, batch)
    return nll.sum() / mask.sum().clamp(min=1)


def frozen_copy(module: Any) -> Any:
    """A deep copy of ``module`` in eval mode with gradients off (a reference model)."""
    import copy

    ref = copy.deepcopy(module)
    ref.eval()
    ref.requires_grad_(False)
    return ref


# ----------------------------------------------------------------------------- references


class Batches(dict):
    """``{split: batch}`` handed to a loss function, with ``.ref`` and ``.step``."""

    ref: Reference | None = None
    step: int = 0


class Reference:
    """The model before training, for terms that need its full distribution (KL).

    Either a frozen deep copy (eval mode, no gradients, cast to the training precision) or,
    when the trained module is a peft LoRA model, the same network with its adapters
    disabled (``frozen=False``: no second copy of the weights). :meth:`logits` runs it
    without gradients.
    """

    def __init__(self, module: Any, adapters_off: bool, dtype: Any = None):
        self._adapters_off = adapters_off
        if adapters_off:
            self.module = module
        else:
            self.module = frozen_copy(module)
            if dtype is not None:
                self.module.to(dtype=dtype)

    @property
    def holds_copy(self) -> bool:
        return not self._adapters_off

    def logits(self, batch: Batch) -> Any:
        import torch

        ctx = self.module.disable_adapter() if self._adapters_off else contextlib.nullcontext()
        with torch.no_grad(), ctx:
            return self.module(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                               use_cache=False).logits

    def sum_logprob(self, batch: Batch) -> Any:
        """Per-sequence summed answer log-probs of the reference, Tensor[B], no gradients."""
        import torch

        ctx = self.module.disable_adapter() if self._adapters_off else contextlib.nullcontext()
        with torch.no_grad(), ctx:
            return -batch_nll(self.module, batch)


def kl_to_reference(module: Any, batch: Batch, ref: Reference, direction: str = "ref||theta") -> Any:
    """KL on all positions of ``batch`` (prompt and padding included), divided by the number
    of positions B·T: open-unlearning's / closer-look's ``kl_div(log p_θ, log p_ref,
    log_target=True, reduction="batchmean")`` on logits viewed as [B·T, V], which is
    KL(ref ‖ θ) averaged per position. ``direction="theta||ref"`` gives KL(θ ‖ ref)."""
    import torch.nn.functional as F

    logits = module(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    lp = F.log_softmax(logits.float(), dim=-1).view(-1, logits.shape[-1])
    lr = F.log_softmax(ref.logits(batch).float(), dim=-1).view(-1, logits.shape[-1])
    if direction == "ref||theta":
        return F.kl_div(lp, lr, reduction="batchmean", log_target=True)
    if direction == "theta||ref":
        return F.kl_div(lr, lp, reduction="batchmean", log_target=True)
    raise BenchError(f"KL direction must be 'ref||theta' or 'theta||ref', got {direction!r}")


def reference_logprobs(bundle: ModelBundle, pairs: Sequence[tuple[str, str, int]],
                       use_cache: bool = True) -> list[float]:
    """Summed log-probs of the first ``n`` answer tokens of each ``(prompt, continuation,
    n)`` under ``bundle`` as it is now, through the ``hf`` backend and the request cache
    (``LogLikelihood`` requests; ``n`` = the answer tokens left after ``max_length``
    truncation). The backend casts the module to float32 on its default device and puts
    it in eval mode; nothing else about the module changes."""
    from bench.backends.cache import AnsweringLayer
    from bench.paths import cache_dir
    from bench.registry import BACKENDS
    from bench.requests import LogLikelihood

    if not pairs:
        return []
    backend = BACKENDS.get("hf")(bundle)
    layer = AnsweringLayer(backend, bundle.fingerprint(), cache_dir() / "requests" if use_cache else None)
    try:
        resps = layer.answer([LogLikelihood(p, c) for p, c, _ in pairs])
    finally:
        layer.close()
    return [float(sum(r.token_logprobs[:n])) for r, (_, _, n) in zip(resps, pairs)]


# ----------------------------------------------------------------------------- hooks

_HOOKS: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("bench_training_hooks", default=None)


_REFERENCE: contextvars.ContextVar[Any] = contextvars.ContextVar("bench_reference_model", default=None)


@contextlib.contextmanager
def reference_model(model: ModelBundle | str | Any | None) -> Iterator[None]:
    """Every :func:`train` call inside the block takes its reference — the ``fixed_ref``
    log-probs and ``batches.ref`` (KL terms, LoRA's adapters-off reference included) — from
    ``model`` (a bundle, or a model directory loaded on each call with the trained
    bundle's tokenizer and prompt) instead of the incoming model: how ``bench run
    --step-reference initial`` gives a later step the model before any step. ``None``:
    the incoming model (the default)."""
    token = _REFERENCE.set(model)
    try:
        yield
    finally:
        _REFERENCE.reset(token)


def _reference_override(bundle: ModelBundle) -> ModelBundle | None:
    src = _REFERENCE.get()
    if src is None or isinstance(src, ModelBundle):
        return src
    from bench import models

    ref = models.load_bundle(src, name=str(src))
    ref.prompt, ref.tokenizer = bundle.prompt, bundle.tokenizer  # tokenise exactly as the trained model
    return ref


_CHECKPOINT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("bench_checkpoint", default=None)


@contextlib.contextmanager
def training_hooks(on_checkpoint: CheckpointHook | None = None, every: int | None = None,
                   each_epoch: bool | None = None) -> Iterator[None]:
    """Install ``on_checkpoint(step, bundle)`` for every :func:`train` call inside the block
    that does not pass its own (how a run evaluates along training without the method
    knowing). ``step`` counts optimizer steps of that call. ``every`` / ``each_epoch``, when
    given, replace the calls' ``checkpoint_every`` / ``checkpoint_each_epoch`` (the cadence
    of ``bench run --eval-every``). During a hook call, :func:`checkpoint_info` says where
    training is."""
    token = _HOOKS.set({"on_checkpoint": on_checkpoint, "every": every, "each_epoch": each_epoch})
    try:
        yield
    finally:
        _HOOKS.reset(token)


def checkpoint_info() -> dict[str, Any] | None:
    """Inside an ``on_checkpoint`` call: ``{"step", "epoch", "total_steps", "desc"}`` of the
    :func:`train` call (``epoch``: epochs done, optimizer steps / steps per epoch, rounded to
    4 places: whole at an epoch end, except a last epoch cut by ``max_steps``); ``None`` elsewhere."""
    return _CHECKPOINT.get()


# ----------------------------------------------------------------------------- the loop


def _lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    # Hugging Face's get_linear_schedule_with_warmup
    def f(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return f


def _optimizer(module: Any, name: str, lr: float, weight_decay: float) -> Any:
    import torch

    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise BenchError("the model has no trainable parameters")
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if name == "adamw":
        # the fused kernel (one pass over each tensor): the same update to float rounding,
        # 0.92x the time of a tiny model's training step on CPU (paired, batches of 32)
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, fused=fused or None)
    if name == "paged_adamw_32bit":
        try:
            import bitsandbytes as bnb
        except ImportError as e:
            raise BenchError("optimizer 'paged_adamw_32bit' needs bitsandbytes (and a GPU)") from e
        return bnb.optim.PagedAdamW32bit(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    raise BenchError(f"unknown optimizer '{name}' (choose 'adamw' or 'paged_adamw_32bit')")


LONG_STEP_S = 120.0  # a training step predicted to take longer gets the one-line warning
WARN_AFTER_STEPS = 3  # steps after the first whose pace predicts the rest (Progress.eta_after_first)


def _skip_hint(desc: str, device: Any) -> str:
    gpu = "" if getattr(device, "type", "cpu") != "cpu" else ", or run it on a GPU"
    if desc.startswith("prepare"):
        return ("pass --as-is (use the base model as the target), or give a prepared model "
                f"directory as --model (bench prepare caches it once){gpu}")
    return f"lower epochs (--set epochs=N) or use a smaller model{gpu}"


def _to(batch: Batch, device: Any) -> Batch:
    return {k: v.to(device) for k, v in batch.items()}


def resolve_device(name: str) -> Any:
    """``"auto"``: CUDA when available, else CPU; otherwise ``torch.device(name)``."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise BenchError(f"device {name!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"device {name!r} requested but CUDA is not available")
    return dev


@dataclass
class _Row:
    """One example of a micro-batch: its index in each split and its refusal index."""

    idx: dict[str, int]
    refusal: int | None = None


MEGABATCH = 50  # group_by_length sorts mega-batches of this many micro-batches (HF's LengthGroupedSampler)


def _plan(n: dict[str, int], anchor: str, order_pool: list[int], opts: TrainOptions, gen: Any,
          n_refusals: int, total: int, micro_per_epoch: int,
          lengths: Sequence[int] | None = None) -> list[list[list[_Row]]]:
    """Epochs → groups → micro-batches of rows, drawn up front (same draws as before: a
    permutation per epoch, then per micro-batch a uniform row of every other split, then
    one refusal index per row). With ``opts.group_by_length`` (and the anchor's token
    ``lengths``) each epoch's permutation is cut into mega-batches of
    :data:`MEGABATCH` micro-batches, each sorted by length, longest first, as Hugging Face's
    ``LengthGroupedSampler`` does: micro-batches hold similar lengths, so little padding."""
    import torch

    epochs: list[list[list[_Row]]] = []
    steps = 0
    while steps < total:
        perm = torch.randperm(len(order_pool), generator=gen).tolist()
        order = [order_pool[i] for i in perm]
        if opts.group_by_length and lengths is not None:
            mega = MEGABATCH * opts.batch_size
            order = [i for m0 in range(0, len(order), mega)
                     for i in sorted(order[m0:m0 + mega], key=lambda i: -lengths[i])]
        groups = []
        for g0 in range(0, micro_per_epoch, opts.grad_accum):
            if steps >= total:
                break
            group = []
            for m in range(g0, min(g0 + opts.grad_accum, micro_per_epoch)):
                idx = order[m * opts.batch_size:(m + 1) * opts.batch_size]
                rows = [_Row({anchor: i}) for i in idx]
                for name in n:
                    if name != anchor:
                        pick = torch.randint(n[name], (len(idx),), generator=gen).tolist()
                        for r, j in zip(rows, pick):
                            r.idx[name] = j
                if n_refusals:
                    for r, k in zip(rows, torch.randint(n_refusals, (len(idx),), generator=gen).tolist()):
                        r.refusal = k
                group.append(rows)
            groups.append(group)
            steps += 1
        epochs.append(groups)
    return epochs


def _split_items(split: Sequence[Item]) -> list[Item]:
    return list(split)


def _forward_logprobs(module: Any, examples: Sequence[Mapping[str, Sequence[int]]], pad: int,
                      batch_size: int = 8) -> list[float]:
    """Summed log-probs of the labelled tokens of each example under ``module`` (no grad)."""
    import torch

    if not examples:
        return []
    dev = next(module.parameters()).device
    was = module.training
    module.eval()
    out: list[float] = []
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            b = _to(collate(examples[i:i + batch_size], pad), dev)
            out += (-batch_nll(module, b)).float().tolist()
    module.train(was)
    return out


def train(
    bundle: ModelBundle,
    loss_fn: LossFn,
    datasets: Mapping[str, Sequence[Item]],
    opts: TrainOptions | None = None,
    *,
    anchor: str | None = None,
    desc: str = "train",
    progress: bool | None = None,
    reference: bool = False,
    fixed_ref: Sequence[str] = (),
    views: Mapping[str, str] | None = None,
    refusals: Sequence[str] = (),
    on_checkpoint: CheckpointHook | None = None,
    keep_adapters: bool = False,
    adapter_name: str = "default",
    **overrides: Any,
) -> TrainLog:
    """Train ``bundle.module`` in place to minimise ``loss_fn(module, batches)``.

    ``opts`` (default :data:`TOFU`) with ``overrides`` (any :class:`TrainOptions` field)
    replaced. ``datasets`` maps split names to items; the ``anchor`` split (default
    ``"forget"`` if present, else the first) is shuffled each epoch and cut into
    micro-batches of ``batch_size``; every other split contributes a batch of the same
    size drawn uniformly at random. ``grad_accum`` micro-batches make one optimizer step
    (the last group of an epoch may be shorter). ``max_steps`` caps the optimizer steps
    (epochs repeat as needed; the schedule decays to 0 at the cap). ``reference``: build a
    :class:`Reference` (``batches.ref``); ``fixed_ref``: batch names whose ``ref_logp``
    is precomputed; ``views`` / ``refusals``: tuple examples (module docstring). With
    LoRA, ``keep_adapters`` leaves the peft model unmerged (for adapter merging) and
    ``adapter_name`` names the adapter trained. The module is left in eval mode with no
    gradients held; ``bundle.module`` is the merged plain model after a LoRA run.
    ``progress``: report progress (:class:`bench.progress.Progress`: a bar on a terminal,
    lines otherwise; ``None``: as ``$BENCH_PROGRESS`` says, ``False``: silent) with the
    step, epoch, loss and ETA; when the first steps predict more than
    :data:`LONG_STEP_S` seconds, one line says so and how to skip the step.
    Models under :data:`bench.threads.SMALL_MODEL_PARAMS` parameters train on one CPU thread.
    Returns a :class:`TrainLog`.
    """
    import torch

    from bench.progress import Progress, expected_line

    unknown = sorted(set(overrides) - set(TRAIN_FIELDS))
    if unknown:
        raise BenchError(f"train() got unknown options {', '.join(unknown)}")
    opts = replace(opts or TOFU, **overrides)
    opts.check()
    views = dict(views or {})
    if not datasets:
        raise BenchError("train() needs at least one dataset")
    anchor = anchor or ("forget" if "forget" in datasets else next(iter(datasets)))
    if anchor not in datasets:
        raise BenchError(f"anchor split '{anchor}' not among {sorted(datasets)}")
    for name, items in datasets.items():
        if len(items) == 0:
            raise BenchError(f"training split '{name}' is empty")
    for view, src in views.items():
        if src not in datasets or view in datasets:
            raise BenchError(f"view '{view}' must name a new batch over one of {sorted(datasets)}, got source '{src}'")
    if views and not refusals:
        raise BenchError("views need refusal templates (the task gives none)")
    for name in fixed_ref:
        if name not in datasets and name not in views:
            raise BenchError(f"fixed_ref batch '{name}' is not a split or a view")
    if opts.precision == "fp16" and not torch.cuda.is_available():
        raise BenchError("precision fp16 needs CUDA (use bf16 on CPU)")

    items = {k: _split_items(v) for k, v in datasets.items()}
    formats = {k: split_format(v) for k, v in datasets.items()}
    for view, src in views.items():
        if formats[src] == "document":
            raise BenchError(f"view '{view}': split '{src}' is a document split (no question to answer)")
    encoded = {k: encode_pairs(bundle, v, opts.max_length) for k, v in datasets.items()}
    view_cache: dict[tuple[str, int, int], dict[str, list[int]]] = {}

    def view_example(view: str, i: int, k: int) -> dict[str, list[int]]:
        key = (view, i, k)
        if key not in view_cache:
            it = items[views[view]][i]
            one = Split([Item(it.id, it.question, refusals[k])], format=formats[views[view]])
            view_cache[key] = encode_pairs(bundle, one, opts.max_length)[0]
        return view_cache[key]

    pad = pad_id(bundle.tokenizer)
    torch.manual_seed(opts.seed)
    gen = torch.Generator().manual_seed(opts.seed)
    pool = list(range(len(encoded[anchor])))
    heldout_pool: list[int] = []
    if opts.early_stop_patience:
        k = max(1, round(opts.early_stop_fraction * len(pool)))
        if k >= len(pool):
            raise BenchError(f"early stopping holds out {k} of {len(pool)} '{anchor}' examples: nothing left to train on")
        perm = torch.randperm(len(pool), generator=torch.Generator().manual_seed(opts.seed + 1)).tolist()
        heldout_pool = sorted(perm[:k])
        pool = sorted(perm[k:])
    n = len(pool)
    micro_per_epoch = math.ceil(n / opts.batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / opts.grad_accum)
    total = opts.max_steps if opts.max_steps is not None else steps_per_epoch * opts.epochs
    warmup = int((opts.warmup_epochs * n) // (opts.batch_size * opts.grad_accum))
    sizes = {k: len(v) for k, v in encoded.items()}
    plan = _plan(sizes, anchor, pool, opts, gen, len(refusals) if views else 0, total, micro_per_epoch,
                 [len(e["input_ids"]) for e in encoded[anchor]])
    heldout_plan: list[list[_Row]] = []
    if heldout_pool:
        hgen = torch.Generator().manual_seed(opts.seed + 2)
        hopts = replace(opts, grad_accum=1)
        hsteps = math.ceil(len(heldout_pool) / opts.batch_size)
        heldout_plan = [g[0] for g in _plan(sizes, anchor, heldout_pool, hopts, hgen,
                                             len(refusals) if views else 0, hsteps, hsteps)[0]]

    def example(name: str, row: _Row) -> dict[str, list[int]]:
        if name in views:
            return view_example(name, row.idx[views[name]], row.refusal or 0)
        return encoded[name][row.idx[name]]

    # fixed per-example reference log-probs, computed once, before the module changes
    ref_values: dict[tuple[str, int, int], float] = {}
    ref_bundle = _reference_override(bundle) if (fixed_ref or reference) else None
    src_bundle = ref_bundle or bundle
    if fixed_ref:
        keys = sorted({(name, row.idx[views.get(name, name)], (row.refusal or 0) if name in views else 0)
                       for rows_list in ([r for ep in plan for g in ep for m in g for r in m],
                                         [r for m in heldout_plan for r in m])
                       for row in rows_list for name in fixed_ref})
        # (prompt, continuation) pairs go through the request backend and its cache; document
        # windows (no request format for them here) by a no-grad pass of the model
        pairs, pair_keys, docs, doc_keys = [], [], [], []
        for name, i, k in keys:
            src = views.get(name, name)
            ex = view_example(name, i, k) if name in views else encoded[name][i]
            if formats[src] == "document":
                docs.append(ex)
                doc_keys.append((name, i, k))
                continue
            it = items[src][i]
            ans = refusals[k] if name in views else it.answer
            n_lab = sum(1 for lab in ex["labels"] if lab != IGNORE)
            if formats[src] == "raw":
                prompt, cont = default_bos(bundle.tokenizer) + it.question, ans
            else:
                prompt, cont = bundle.prompt.prompt(it.question, bundle.tokenizer), bundle.prompt.continuation(ans)
            pairs.append((prompt, cont, n_lab))
            pair_keys.append((name, i, k))
        t_ref = time.perf_counter()
        # a module that already carries (trained) adapters: the reference is its base network
        off = src_bundle.module.disable_adapter() if _is_peft(src_bundle.module) else contextlib.nullcontext()
        with off:
            ref_values = dict(zip(pair_keys, reference_logprobs(src_bundle, pairs)))
            ref_values.update(zip(doc_keys, _forward_logprobs(src_bundle.module, docs, pad)))
        ref_seconds = time.perf_counter() - t_ref
    else:
        ref_seconds = 0.0

    def make_batches(rows: list[_Row], device: Any) -> Batches:
        out = Batches()
        for name in list(encoded) + list(views):
            b = collate([example(name, r) for r in rows], pad)
            if name in fixed_ref:
                b["ref_logp"] = torch.tensor(
                    [ref_values[(name, r.idx[views.get(name, name)], (r.refusal or 0) if name in views else 0)]
                     for r in rows], dtype=torch.float32)
            out[name] = _to(b, device)
        return out

    device = resolve_device(opts.device)
    module = bundle.module
    module.to(device)
    if opts.lora_r:
        from bench.lora import wrap

        module = wrap(module, opts, adapter_name)
        bundle.module = module
    ref = None
    if reference:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(opts.precision)
        if ref_bundle is not None:
            ref = Reference(ref_bundle.module.to(device), adapters_off=_is_peft(ref_bundle.module), dtype=dtype)
        else:
            ref = Reference(module, adapters_off=_is_peft(module), dtype=dtype)
    ref_name = None if ref_bundle is None else ref_bundle.name
    del ref_bundle, src_bundle
    if opts.grad_checkpointing:
        base = module.get_base_model() if _is_peft(module) else module
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(base, "config"):
            base.config.use_cache = False
    opt = _optimizer(module, opts.optimizer, opts.lr, opts.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(warmup, total))
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(opts.precision)
    scaler = torch.amp.GradScaler("cuda") if opts.precision == "fp16" else None
    hooks = {} if on_checkpoint is not None else (_HOOKS.get() or {})
    hook = on_checkpoint if on_checkpoint is not None else hooks.get("on_checkpoint")
    every = opts.checkpoint_every if hooks.get("every") is None else int(hooks["every"])
    each_epoch = opts.checkpoint_each_epoch if hooks.get("each_epoch") is None else bool(hooks["each_epoch"])
    log = TrainLog(desc=desc, steps=total, warmup_steps=warmup,
                   options={**asdict(opts), "anchor": anchor, "reference": reference,
                            "reference_copy": bool(ref and ref.holds_copy), "fixed_ref": list(fixed_ref),
                            "ref_logprob_seconds": round(ref_seconds, 3), "device": str(device),
                            **({"reference_model": ref_name} if ref_name else {})})
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def autocast() -> Any:
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=amp_dtype)

    def compute(rows: list[_Row], step: int) -> tuple[Any, dict[str, Any]]:
        batches = make_batches(rows, device)
        batches.ref, batches.step = ref, step
        with autocast():
            out = loss_fn(module, batches)
        if isinstance(out, Mapping):
            if "loss" not in out:
                raise BenchError(f"{desc}: a loss function returning a mapping must give 'loss'")
            return out["loss"], {k: v for k, v in out.items() if k != "loss"}
        return out, {}

    def heldout_loss() -> float:
        module.eval()
        with torch.no_grad():
            vals = [compute(rows, len(log.losses))[0].item() for rows in heldout_plan]
        module.train()
        return sum(vals) / len(vals)

    def checkpoint(step: int) -> None:
        if hook is None:
            return
        module.eval()
        token = _CHECKPOINT.set({"step": step, "epoch": round(step / steps_per_epoch, 4), "total_steps": total,
                                 "desc": desc})
        try:
            with torch.no_grad():
                hook(step, bundle)
        finally:
            _CHECKPOINT.reset(token)
        module.train()

    t0 = time.perf_counter()
    module.train()
    bar = Progress(desc, total, "steps", enabled=progress)
    warned = False
    scoped = contextlib.ExitStack()  # closed in the finally below
    scoped.enter_context(model_threads(module))
    best, bad = math.inf, 0

    def held_out(done: int) -> bool:
        """Record the held-out loss after ``done`` steps; True when early stopping ends training."""
        nonlocal best, bad
        h = heldout_loss()
        log.heldout.append((done, h))
        best, bad = (h, 0) if h < best else (best, bad + 1)
        log.stopped_early = bad >= opts.early_stop_patience
        return log.stopped_early

    try:
        for epoch, groups in enumerate(plan):
            for group in groups:
                step = len(log.losses)
                step_loss = 0.0
                step_terms: dict[str, float] = {}
                for rows in group:
                    loss, terms = compute(rows, step)
                    if not torch.isfinite(loss):
                        raise BenchError(f"{desc}: the loss became {loss.item()} at step {step}")
                    scaled = loss / len(group)
                    (scaler.scale(scaled) if scaler else scaled).backward()
                    step_loss += loss.item() / len(group)
                    for k, v in terms.items():
                        step_terms[k] = step_terms.get(k, 0.0) + float(v) / len(group)
                if scaler:
                    scaler.unscale_(opt)
                if opts.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_([p for p in module.parameters() if p.requires_grad],
                                                   opts.max_grad_norm)
                if scaler:
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                log.losses.append(step_loss)
                for k, v in step_terms.items():
                    log.terms.setdefault(k, []).append(v)
                bar.update(1, epoch=f"{epoch + 1}/{len(plan)}", loss=round(step_loss, 4))
                paced = bar.done >= 2 and (bar.done > WARN_AFTER_STEPS or bar.elapsed() > 5)
                if not warned and (paced or bar.elapsed() > LONG_STEP_S):  # a first step that long: say so now
                    warned = True
                    eta = bar.eta_after_first() if bar.done >= 2 else bar.eta()
                    if eta is not None and eta > LONG_STEP_S:
                        bar.note(expected_line(f"{desc} ({total} steps)", bar.elapsed() + eta,
                                               _skip_hint(desc, device)))
                done = len(log.losses)
                if every and done % every == 0:
                    checkpoint(done)
                if heldout_plan and opts.eval_every and done % opts.eval_every == 0 and held_out(done):
                    break
            if log.stopped_early:
                break
            done = len(log.losses)
            if each_epoch and not (every and done % every == 0):
                checkpoint(done)
            if heldout_plan and not opts.eval_every and held_out(done):
                break
    finally:
        bar.close()
        scoped.close()
        opt.zero_grad(set_to_none=True)
        module.eval()
        if opts.grad_checkpointing:
            base = module.get_base_model() if _is_peft(module) else module
            base.gradient_checkpointing_disable()
        ref = None  # drop a frozen copy before merging
    if device.type == "cuda":
        log.peak_memory_bytes = int(torch.cuda.max_memory_allocated(device))
    if opts.lora_r and not keep_adapters:
        from bench.lora import merge

        bundle.module = merge(module)
    log.seconds = time.perf_counter() - t0
    bundle.provenance.setdefault("training", []).append(log.summary())
    return log


def finetune(
    bundle: ModelBundle,
    items: Sequence[Item],
    *,
    epochs: int,
    lr: float,
    batch_size: int = 8,
    grad_accum: int = 1,
    weight_decay: float = 0.0,
    warmup_epochs: float = 0.0,
    max_length: int = 512,
    seed: int = 0,
    desc: str = "finetune",
    progress: bool | None = None,
    **more: Any,
) -> TrainLog:
    """Plain answer-token NLL fine-tuning of ``bundle.module`` on ``items`` (in place);
    used by ``bench prepare`` for the target and retain-only models, by the tiny model
    builder and by task-vector methods. Loss: :func:`token_mean_nll` per micro-batch.
    ``more``: any other :class:`TrainOptions` field."""

    def loss(module: Any, batches: dict[str, Batch]) -> Any:
        return token_mean_nll(module, batches["train"])

    return train(
        bundle, loss, {"train": items}, epochs=epochs, lr=lr, batch_size=batch_size,
        grad_accum=grad_accum, weight_decay=weight_decay, warmup_epochs=warmup_epochs,
        max_length=max_length, seed=seed, desc=desc, progress=progress, **more,
    )
