"""Greedy generation with a transformers causal LM.

* :func:`generate_naive` — the field's way: ``model.generate`` (greedy, left padding) in
  fixed batches of ``batch_size`` in request order, each batch run to its longest
  ``max_new_tokens`` (rows are cut to their own limit afterwards; greedy decoding makes
  that the same as stopping earlier).
* :func:`generate_fast` — continuous batching: our own greedy loop over a KV cache with
  ``slots`` rows; a row is finished as soon as it meets EOS, its ``max_new_tokens`` or a
  stop string, finished rows leave the batch as soon as ``slots // 8`` of them have
  gathered, and waiting prompts are prefilled into the free slots, so no row waits for
  the slowest. Cache columns no row attends to any more are dropped. Models whose cache
  cannot be edited (see :mod:`kv`) fall back to length-sorted ``model.generate`` batches.

Both paths end a row the same way (:class:`RowState`): EOS (the tokenizer's and the
model's generation-config EOS ids) ends it and is not counted; a stop string ends it at
the first token whose decoded prefix contains one, and the text is cut before the stop's
earliest occurrence; otherwise ``max_new_tokens`` ends it. Text is decoded with
``skip_special_tokens=True`` and stripped; ``num_tokens`` counts the tokens kept (before
EOS; up to the token completing the stop string).

Greedy argmax is deterministic for a fixed batch composition; between different
compositions (padding, batch size) float rounding may flip a near-tie, so fast and naive
agree token for token except where two logits tie to within rounding (tested on the tiny
model; see the report of the backend for rates on real models).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.backends import kv
from bench.backends.batching import fixed_batches
from bench.errors import BenchError


@dataclass(frozen=True)
class GenItem:
    prompt: tuple[int, ...]
    max_new_tokens: int
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenResult:
    text: str
    num_tokens: int
    finish_reason: str  # "eos" | "stop" | "length"


@dataclass
class RowState:
    """The tokens of one row so far and why it ended (None while running)."""

    item: GenItem
    eos: frozenset[int]
    decode: Callable[[list[int]], str]
    tokens: list[int] = field(default_factory=list)
    reason: str | None = None

    def push(self, tok: int) -> bool:
        """Add a generated token; True when the row is finished."""
        if self.reason is not None:
            return True
        if tok in self.eos:
            self.reason = "eos"
            return True
        self.tokens.append(tok)
        if self.item.stop:
            text = self.decode(self.tokens)
            if any(s in text for s in self.item.stop):
                self.reason = "stop"
                return True
        if len(self.tokens) >= self.item.max_new_tokens:
            self.reason = "length"
            return True
        return False

    def result(self) -> GenResult:
        text = self.decode(self.tokens)
        if self.reason == "stop":
            cut = min(i for i in (text.find(s) for s in self.item.stop if s) if i >= 0)
            text = text[:cut]
        return GenResult(text.strip(), len(self.tokens), self.reason or "length")


def eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """EOS ids: the tokenizer's plus the model's generation-config (and config) ones."""
    ids: set[int] = set()

    def add(x: Any) -> None:
        if x is None:
            return
        if isinstance(x, (list, tuple, set)):
            for y in x:
                add(y)
        else:
            ids.add(int(x))

    add(getattr(tokenizer, "eos_token_id", None))
    add(getattr(getattr(model, "generation_config", None), "eos_token_id", None))
    add(getattr(getattr(model, "config", None), "eos_token_id", None))
    return frozenset(ids)


def _decoder(tokenizer: Any) -> Callable[[list[int]], str]:
    return lambda toks: tokenizer.decode(toks, skip_special_tokens=True)


def _check(items: Sequence[GenItem]) -> None:
    for it in items:
        if not it.prompt:
            raise BenchError("a Generate request has an empty prompt (put the BOS text in the prompt)")
        if it.max_new_tokens < 0:
            raise BenchError(f"a Generate request has max_new_tokens={it.max_new_tokens} (< 0)")


def _left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, width - len(p):] = torch.tensor(list(p), dtype=torch.long)
        mask[r, width - len(p):] = 1
    return ids, mask


def _empty(it: GenItem) -> GenResult:
    return GenResult("", 0, "length")


# --------------------------------------------------------------------------- naive


def _greedy_config(model: Any, max_new: int, eos: frozenset[int], pad_id: int) -> Any:
    """A GenerationConfig for plain greedy decoding (no model-default penalties/sampling)."""
    from transformers import GenerationConfig

    return GenerationConfig(
        max_new_tokens=max_new, do_sample=False, num_beams=1, eos_token_id=sorted(eos),
        pad_token_id=pad_id, repetition_penalty=1.0, no_repeat_ngram_size=0,
        temperature=None, top_p=None, top_k=None,
    )


def generate_naive(model: Any, tokenizer: Any, items: Sequence[GenItem], batch_size: int,
                   pad_id: int, order: Sequence[int] | None = None) -> list[GenResult]:
    """``model.generate`` in fixed batches of ``batch_size``, in ``order`` (default: as given)."""
    _check(items)
    eos = eos_ids(model, tokenizer)
    decode = _decoder(tokenizer)
    dev = next(model.parameters()).device
    order = list(range(len(items))) if order is None else list(order)
    results: list[GenResult | None] = [None] * len(items)
    todo = [i for i in order if items[i].max_new_tokens > 0]
    for i in order:
        if items[i].max_new_tokens == 0:
            results[i] = _empty(items[i])
    for rng in fixed_batches(len(todo), batch_size):
        idx = [todo[k] for k in rng]
        ids, mask = _left_pad([items[i].prompt for i in idx], pad_id)
        max_new = max(items[i].max_new_tokens for i in idx)
        out = model.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev),
                             generation_config=_greedy_config(model, max_new, eos, pad_id))
        new = out[:, ids.shape[1]:].tolist()
        for r, i in enumerate(idx):
            row = RowState(items[i], eos, decode)
            for t in new[r]:
                if row.push(t):
                    break
            results[i] = row.result()
    return results  # type: ignore[return-value]


# --------------------------------------------------------------------------- fast


@dataclass
class _Active:
    """The running batch: one entry per live row, tensors on the model's device."""

    index: list[int]  # request index per row
    rows: list[RowState]
    cache: Any
    mask: Any  # [B, T] long, covers the cached columns
    next_pos: Any  # [B] long, position of the next input token
    last: Any  # [B] long, next input token


def generate_fast(model: Any, tokenizer: Any, items: Sequence[GenItem], slots: int,
                  pad_id: int, on_step: Any = None) -> list[GenResult]:
    """Continuous batching greedy decoding with at most ``slots`` live rows.
    ``on_step(finished, tokens)``, if given, is called after each decoding step with the
    rows finished so far and the tokens generated in that step."""
    import torch

    _check(items)
    eos = eos_ids(model, tokenizer)
    decode = _decoder(tokenizer)
    dev = next(model.parameters()).device
    results: list[GenResult | None] = [None] * len(items)
    queue = sorted((i for i in range(len(items)) if items[i].max_new_tokens > 0),
                   key=lambda i: (-len(items[i].prompt), i))
    for i, it in enumerate(items):
        if it.max_new_tokens == 0:
            results[i] = _empty(it)
    max_len = max((len(items[i].prompt) + items[i].max_new_tokens for i in queue), default=0)
    refill_min = max(1, slots // 8)
    act: _Active | None = None
    while queue or act is not None:
        free = slots - (0 if act is None else len(act.index))
        if queue and free > 0 and (act is None or free >= min(refill_min, len(queue))):
            take, queue = queue[:free], queue[free:]
            new = _prefill(model, items, take, eos, decode, pad_id, dev, max_len, results)
            if new == "unsupported":
                rest = take + queue + ([] if act is None else act.index)
                if act is not None:  # pragma: no cover - cache types are checked at first prefill
                    raise BenchError("internal: cache became unsupported mid-run")
                fallback = generate_naive(model, tokenizer, items, slots, pad_id,
                                          order=sorted(rest, key=lambda i: -len(items[i].prompt)))
                for i in rest:
                    results[i] = fallback[i]
                queue = []
                continue
            act = _merge(act, new)
            if act is not None and not act.index:
                act = None
            continue
        if act is None:
            continue
        # one decoding step for every live row
        mask = torch.cat([act.mask, act.mask.new_ones(act.mask.shape[0], 1)], dim=1)
        out = model(input_ids=act.last.unsqueeze(1), attention_mask=mask,
                    position_ids=act.next_pos.unsqueeze(1), past_key_values=act.cache,
                    use_cache=True, logits_to_keep=1)
        nxt = out.logits[:, -1, :].float().argmax(-1)
        act.cache, act.mask, act.next_pos, act.last = out.past_key_values, mask, act.next_pos + 1, nxt
        live = 0
        for r, t in enumerate(nxt.tolist()):
            row = act.rows[r]
            if row.reason is None:
                live += 1
                if row.push(t):
                    results[act.index[r]] = row.result()
        if on_step is not None:
            on_step(sum(x is not None for x in results), live)
        # Finished rows linger (their tokens ignored) until a few have gathered: removing
        # rows copies the whole cache, which costs about as much as a dozen rows' step.
        finished = {r for r, row in enumerate(act.rows) if row.reason is not None}
        if len(finished) >= min(refill_min, len(act.rows)):
            act = _drop(act, finished)
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


def _prefill(model: Any, items: Sequence[GenItem], take: list[int], eos: frozenset[int],
             decode: Callable, pad_id: int, dev: Any, max_len: int,
             results: list[GenResult | None]) -> _Active | str:
    """Run the prompts ``take`` (left-padded); the rows not finished by their first token."""
    ids, mask = _left_pad([items[i].prompt for i in take], pad_id)
    mask = mask.to(dev)
    pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    out = model(input_ids=ids.to(dev), attention_mask=mask, position_ids=pos, use_cache=True,
                logits_to_keep=1)
    if not kv.supported(out.past_key_values, max_len):
        return "unsupported"
    first = out.logits[:, -1, :].float().argmax(-1)
    rows = [RowState(items[i], eos, decode) for i in take]
    act = _Active(list(take), rows, out.past_key_values, mask, mask.sum(-1), first)
    done = {r for r, t in enumerate(first.tolist()) if rows[r].push(t)}
    for r in done:
        results[take[r]] = rows[r].result()
    return _drop(act, done) if done else act


def _drop(act: _Active, done: set[int]) -> _Active | None:
    """``act`` without rows ``done``, and without leading columns no row attends to."""
    import torch

    keep = [r for r in range(len(act.index)) if r not in done]
    if not keep:
        return None
    k = torch.tensor(keep, dtype=torch.long, device=act.mask.device)
    mask = act.mask.index_select(0, k)
    lead = int((mask.sum(0) == 0).long().cumprod(0).sum().item())  # all-zero leading columns
    cache = kv.select_rows(act.cache, k)
    if lead:
        cache, mask = kv.drop_leading(cache, lead), mask[:, lead:]
    return _Active([act.index[r] for r in keep], [act.rows[r] for r in keep], cache, mask,
                   act.next_pos.index_select(0, k), act.last.index_select(0, k))


def _merge(a: _Active | None, b: _Active | None) -> _Active | None:
    """Rows of ``a`` then rows of ``b``, the shorter cache left-padded (masked) to the longer."""
    import torch

    if a is None or b is None:
        return b if a is None else a
    ta, tb = a.mask.shape[1], b.mask.shape[1]
    ca, cb, ma, mb = a.cache, b.cache, a.mask, b.mask
    if ta < tb:
        ca, ma = kv.left_pad(ca, tb - ta), torch.cat([ma.new_zeros(ma.shape[0], tb - ta), ma], 1)
    elif tb < ta:
        cb, mb = kv.left_pad(cb, ta - tb), torch.cat([mb.new_zeros(mb.shape[0], ta - tb), mb], 1)
    return _Active(a.index + b.index, a.rows + b.rows, kv.concat_rows(ca, cb),
                   torch.cat([ma, mb], 0), torch.cat([a.next_pos, b.next_pos]),
                   torch.cat([a.last, b.last]))
