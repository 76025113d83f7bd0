"""The one training loop every training-based method (and ``bench prepare``) shares.

Conventions
-----------
* Pairs are tokenised exactly as evaluation tokenises them: prompt =
  ``bundle.prompt.prompt(question, tokenizer)``, continuation =
  ``bundle.prompt.continuation(answer)``, ids by :func:`bench.model_bundle.tokenize_pair`.
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
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.errors import BenchError
from bench.items import Item, split_format
from bench.model_bundle import ModelBundle, tokenize_pair
from bench.prompts import default_bos

IGNORE = -100

Batch = dict[str, Any]  # input_ids, labels, attention_mask: LongTensor[B, T]
LossFn = Callable[[Any, dict[str, Batch]], Any]  # (module, {split: batch}) -> scalar Tensor


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


TOFU = TrainOptions()


@dataclass
class TrainLog:
    """What a :func:`train` call did: optimizer steps, the loss of each step, timings."""

    desc: str
    steps: int
    warmup_steps: int
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out["losses"] = [round(x, 6) for x in self.losses]
        return out


# ----------------------------------------------------------------------------- encoding


def encode_pairs(bundle: ModelBundle, items: Sequence[Item], max_length: int) -> list[dict[str, list[int]]]:
    """``[{"input_ids", "labels"}]`` for ``items``: prompt tokens labelled -100, answer
    tokens labelled with their ids, truncated to ``max_length`` tokens.

    The split's format (:func:`bench.items.split_format`) decides the text: ``"model"``
    (default) goes through the model's prompt config; ``"raw"`` is BOS (where the model
    uses one) + ``question`` as is, continuation ``answer`` verbatim; ``"document"`` texts
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
    out = []
    for it in items:
        if fmt == "raw":
            prompt, cont = bos + it.question, it.answer
        else:
            prompt = bundle.prompt.prompt(it.question, bundle.tokenizer)
            cont = bundle.prompt.continuation(it.answer)
        p_ids, c_ids = tokenize_pair(bundle.tokenizer, prompt, cont)
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

    Position t scores token t+1 given tokens ≤ t; logits are upcast to float32.
    """
    import torch.nn.functional as F

    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    ).logits
    labels = batch["labels"][:, 1:]
    logits = logits[:, :-1].float()
    nll = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")
    return nll, labels != IGNORE


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
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    if name == "paged_adamw_32bit":
        try:
            import bitsandbytes as bnb
        except ImportError as e:
            raise BenchError("optimizer 'paged_adamw_32bit' needs bitsandbytes (and a GPU)") from e
        return bnb.optim.PagedAdamW32bit(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    raise BenchError(f"unknown optimizer '{name}' (choose 'adamw' or 'paged_adamw_32bit')")


def _to(batch: Batch, device: Any) -> Batch:
    return {k: v.to(device) for k, v in batch.items()}


def train(
    bundle: ModelBundle,
    loss_fn: LossFn,
    datasets: Mapping[str, Sequence[Item]],
    *,
    epochs: int = TOFU.epochs,
    lr: float = TOFU.lr,
    batch_size: int = TOFU.batch_size,
    grad_accum: int = TOFU.grad_accum,
    weight_decay: float = TOFU.weight_decay,
    warmup_epochs: float = TOFU.warmup_epochs,
    max_length: int = TOFU.max_length,
    seed: int = TOFU.seed,
    optimizer: str = "adamw",
    max_grad_norm: float | None = 1.0,
    anchor: str | None = None,
    desc: str = "train",
    progress: bool | None = None,
) -> TrainLog:
    """Train ``bundle.module`` in place to minimise ``loss_fn(module, {split: batch})``.

    ``datasets`` maps split names to items; the ``anchor`` split (default ``"forget"`` if
    present, else the first) is shuffled each epoch and cut into micro-batches of
    ``batch_size``; every other split contributes a batch of the same size drawn uniformly
    at random. ``grad_accum`` micro-batches make one optimizer step (the last group of an
    epoch may be shorter). The module is left in eval mode with no gradients held.
    ``progress``: show a tqdm bar (``None``: only on a terminal). Returns a :class:`TrainLog`.
    """
    import torch
    from tqdm.auto import tqdm

    for name, val in (("epochs", epochs), ("batch_size", batch_size), ("grad_accum", grad_accum)):
        if val < 1:
            raise BenchError(f"{name} must be at least 1, got {val}")
    if lr <= 0 or warmup_epochs < 0 or weight_decay < 0:
        raise BenchError(f"need lr > 0, warmup_epochs >= 0, weight_decay >= 0 (got {lr}, {warmup_epochs}, {weight_decay})")
    if not datasets:
        raise BenchError("train() needs at least one dataset")
    anchor = anchor or ("forget" if "forget" in datasets else next(iter(datasets)))
    if anchor not in datasets:
        raise BenchError(f"anchor split '{anchor}' not among {sorted(datasets)}")
    for name, items in datasets.items():
        if len(items) == 0:
            raise BenchError(f"training split '{name}' is empty")

    encoded = {k: encode_pairs(bundle, v, max_length) for k, v in datasets.items()}
    pad = pad_id(bundle.tokenizer)
    n = len(encoded[anchor])
    micro_per_epoch = math.ceil(n / batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / grad_accum)
    total = steps_per_epoch * epochs
    warmup = int((warmup_epochs * n) // (batch_size * grad_accum))

    module = bundle.module
    device = next(module.parameters()).device
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = _optimizer(module, optimizer, lr, weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(warmup, total))
    log = TrainLog(
        desc=desc, steps=total, warmup_steps=warmup,
        options=dict(epochs=epochs, lr=lr, batch_size=batch_size, grad_accum=grad_accum,
                     weight_decay=weight_decay, warmup_epochs=warmup_epochs,
                     max_length=max_length, seed=seed, optimizer=optimizer,
                     max_grad_norm=max_grad_norm, anchor=anchor),
    )
    t0 = time.perf_counter()
    module.train()
    bar = tqdm(total=total, desc=desc, disable=(not progress) if progress is not None else None)
    try:
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen).tolist()
            for g0 in range(0, micro_per_epoch, grad_accum):
                group = range(g0, min(g0 + grad_accum, micro_per_epoch))
                step_loss = 0.0
                for m in group:
                    idx = order[m * batch_size:(m + 1) * batch_size]
                    batches = {anchor: collate([encoded[anchor][i] for i in idx], pad)}
                    for name, exs in encoded.items():
                        if name != anchor:
                            pick = torch.randint(len(exs), (len(idx),), generator=gen).tolist()
                            batches[name] = collate([exs[i] for i in pick], pad)
                    loss = loss_fn(module, {k: _to(b, device) for k, b in batches.items()})
                    if not torch.isfinite(loss):
                        raise BenchError(f"{desc}: the loss became {loss.item()} at step {len(log.losses)}")
                    (loss / len(group)).backward()
                    step_loss += loss.item() / len(group)
                if max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(module.parameters(), max_grad_norm)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                log.losses.append(step_loss)
                bar.update(1)
                bar.set_postfix(loss=f"{step_loss:.4f}")
    finally:
        bar.close()
        opt.zero_grad(set_to_none=True)
        module.eval()
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
) -> TrainLog:
    """Plain answer-token NLL fine-tuning of ``bundle.module`` on ``items`` (in place);
    used by ``bench prepare`` for the target and retain-only models and by the tiny model
    builder. Loss: :func:`token_mean_nll` per micro-batch."""

    def loss(module: Any, batches: dict[str, Batch]) -> Any:
        return token_mean_nll(module, batches["train"])

    return train(
        bundle, loss, {"train": items}, epochs=epochs, lr=lr, batch_size=batch_size,
        grad_accum=grad_accum, weight_decay=weight_decay, warmup_epochs=warmup_epochs,
        max_length=max_length, seed=seed, desc=desc, progress=progress,
    )
