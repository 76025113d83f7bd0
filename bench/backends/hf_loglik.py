"""Teacher-forced scoring of continuations with a transformers causal LM.

Two paths give the same numbers (within float rounding):

* :func:`score_naive` — the field's way: fixed batches in request order, the full
  ``prompt + continuation`` sequence, the full LM head over every position.
* :func:`score_fast` — each distinct prompt runs once (right-padded prompt batch, KV
  cache kept); all its continuations are then scored against that cache in a second pass
  (the cache rows are repeated per continuation, positions continue after the prompt,
  the attention mask covers the prompt's real tokens and the continuation). The LM head
  is applied only where a next-token distribution is needed: at each prompt's last token
  and at every continuation token but the last. Batches follow :mod:`batching` (sorted by
  length, bounded by a token budget). If the model's cache cannot be edited (see
  :mod:`kv`), that batch falls back to the naive computation.

We chose KV-cache prefix sharing over one packed sequence with a custom 4D mask: it needs
no custom mask (which attention implementations treat differently), keeps the LM head
gather simple, and lets one batch mix continuations of many prompts.

Log-softmax is always taken in float32, whatever the model dtype. Per scored token we
return ``log p(token)``, whether the token is the argmax (first index on ties), and on
request ``mu = Σ_v p_v log p_v`` and ``var = Σ_v p_v (log p_v)² − mu²``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.backends import kv
from bench.backends.batching import Chunk, fixed_batches, group_by_key, plan_batches
from bench.errors import BenchError

# Elements of one float32 logits block in the LM-head loop (64 MiB).
LOGITS_BLOCK = 1 << 24


@dataclass(frozen=True)
class ScoreItem:
    """One distinct (prompt, continuation) to score; ``stats`` asks for mu/var too."""

    prompt: tuple[int, ...]
    cont: tuple[int, ...]
    stats: bool = False


@dataclass
class Scores:
    """Per continuation token: log-prob, argmax flag, and (if asked) mu and var."""

    logprobs: list[float]
    greedy: list[bool]
    mu: list[float] | None = None
    var: list[float] | None = None


def model_device(model: Any) -> Any:
    import torch

    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def decoder_body(model: Any) -> Any:
    """The transformer body (embeddings → final norm) of a causal LM; PEFT wrappers unwrapped."""
    if hasattr(model, "get_base_model"):  # peft.PeftModel
        model = model.get_base_model()
    body = getattr(model, "base_model", None)
    if body is None or body is model:
        raise BenchError(f"hf backend: cannot find the decoder body of {type(model).__name__}; use mode='naive'")
    return body


def lm_head(model: Any, hidden: Any) -> Any:
    """Logits for ``hidden`` ([N, H]) as the model's own forward computes them."""
    if hasattr(model, "get_base_model"):  # peft.PeftModel
        model = model.get_base_model()
    logits = model.get_output_embeddings()(hidden)
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        import torch

        logits = torch.tanh(logits / cap) * cap
    return logits


def _token_scores(logits_fn, hidden: Any, targets: Any, stats: Any, vocab: int) -> tuple[Any, ...]:
    """Scores of ``targets`` ([N]) under ``logits_fn(hidden)`` ([N, vocab]), in row blocks.

    ``stats`` is None or a bool tensor [N] of the rows that need mu/var. Returns float32
    tensors ``(logprob, is_argmax, mu, var)``; mu/var are None without ``stats`` and NaN
    on rows not asked for.
    """
    import torch

    n = hidden.shape[0]
    lps, greedy, mus, vars_ = [], [], [], []
    step = max(1, LOGITS_BLOCK // max(1, vocab))
    for start in range(0, n, step):
        end = min(n, start + step)
        logits = logits_fn(hidden[start:end]).float()
        logp = torch.log_softmax(logits, dim=-1)
        tgt = targets[start:end]
        lps.append(logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1))
        greedy.append(logits.argmax(-1) == tgt)
        del logits
        if stats is not None:
            mu = torch.full((end - start,), float("nan"), device=logp.device)
            var = mu.clone()
            sel = stats[start:end]
            if bool(sel.any()):
                lq = logp[sel]
                p = lq.exp()
                m = (p * lq).sum(-1)
                mu[sel] = m
                # Σ p (log p − mu)² = Σ p (log p)² − mu², without the cancellation
                var[sel] = (p * (lq - m.unsqueeze(-1)).square()).sum(-1)
            mus.append(mu)
            vars_.append(var)

    def cat(xs, dtype=torch.float32):
        return torch.cat(xs) if xs else torch.zeros(0, dtype=dtype)

    return (cat(lps), cat(greedy, torch.bool), None if stats is None else cat(mus),
            None if stats is None else cat(vars_))


def _stats_mask(items: Sequence[ScoreItem], device: Any) -> Any:
    """Per scored token of ``items`` (in order): does its item want mu/var? None if none does."""
    import torch

    if not any(it.stats for it in items):
        return None
    flags = [it.stats for it in items for _ in it.cont]
    return torch.tensor(flags, dtype=torch.bool, device=device)


def _split(items: Sequence[ScoreItem], flat: tuple[Any, ...]) -> list[Scores]:
    """Cut flat per-token tensors back into one :class:`Scores` per item, in order."""
    lp, gr, mu, var = (t.tolist() if t is not None else None for t in flat)
    out, pos = [], 0
    for it in items:
        n = len(it.cont)
        out.append(Scores(lp[pos:pos + n], gr[pos:pos + n],
                          mu[pos:pos + n] if it.stats and mu is not None else None,
                          var[pos:pos + n] if it.stats and var is not None else None))
        pos += n
    return out


def _check(items: Sequence[ScoreItem]) -> None:
    for it in items:
        if not it.prompt and it.cont:
            raise BenchError("a LogLikelihood/TokenStats request has an empty prompt: the first "
                             "continuation token cannot be scored (put the BOS text in the prompt)")


# --------------------------------------------------------------------------- naive


def score_naive(model: Any, items: Sequence[ScoreItem], batch_size: int, pad_id: int = 0) -> list[Scores]:
    """Fixed batches of ``batch_size`` in order; full sequences, right padding, full LM head."""
    import torch

    _check(items)
    dev = model_device(model)
    results: list[Scores] = []
    for rng in fixed_batches(len(items), batch_size):
        batch = [items[i] for i in rng]
        seqs = [list(it.prompt) + list(it.cont) for it in batch]
        width = max(len(s) for s in seqs)
        if width == 0:
            results.extend(Scores([], [], [] if it.stats else None, [] if it.stats else None) for it in batch)
            continue
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, :len(s)] = torch.tensor(s, dtype=torch.long)
            mask[r, :len(s)] = 1
        logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits
        rows, cols, tgts = [], [], []
        for r, it in enumerate(batch):
            p = len(it.prompt)
            for t in range(len(it.cont)):
                rows.append(r)
                cols.append(p + t - 1)
                tgts.append(it.cont[t])
        sel = logits[torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long)]
        flat = _token_scores(lambda h: h, sel, torch.tensor(tgts, dtype=torch.long, device=sel.device),
                             _stats_mask(batch, sel.device), sel.shape[-1])
        results.extend(_split(batch, flat))
        del logits
    return results


# --------------------------------------------------------------------------- fast


def score_fast(model: Any, items: Sequence[ScoreItem], token_budget: int, pad_id: int = 0,
               on_batch: Any = None) -> list[Scores]:
    """Prefix-shared, LM-head-gathered, length-sorted scoring (same numbers as naive).
    ``on_batch(items, tokens)``, if given, is called after each batch with its counts."""
    _check(items)
    prompts, members = group_by_key([it.prompt for it in items])
    cont_lens = [[len(items[j].cont) for j in mem] for mem in members]
    results: list[Scores | None] = [None] * len(items)
    for batch in plan_batches([len(p) for p in prompts], cont_lens, token_budget):
        rows = [(ch, members[ch.group][c]) for ch in batch for c in ch.conts]
        todo = [items[j] for _, j in rows]
        scored = _fast_batch(model, prompts, batch, todo, pad_id)
        for (_, j), s in zip(rows, scored, strict=True):
            results[j] = s
        if on_batch is not None:
            on_batch(len(todo), sum(len(it.cont) for it in todo))
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


def _fast_batch(model: Any, prompts: Sequence[tuple[int, ...]], batch: Sequence[Chunk],
                rows: Sequence[ScoreItem], pad_id: int) -> list[Scores]:
    """Score ``rows`` (the continuations of ``batch``, chunk by chunk) in two passes."""
    import torch

    dev = model_device(model)
    body = decoder_body(model)
    # distinct prompts of this batch (a group may be split into several chunks)
    groups = list(dict.fromkeys(ch.group for ch in batch))
    slot = {g: i for i, g in enumerate(groups)}
    plens = [len(prompts[g]) for g in groups]
    pmax = max(plens)
    row_slot = [slot[ch.group] for ch in batch for _ in ch.conts]
    clens = [len(it.cont) for it in rows]
    cmax = max(clens)
    if cmax == 0:
        return [Scores([], [], [] if it.stats else None, [] if it.stats else None) for it in rows]

    # pass 1: prompts, right-padded, cache kept
    pids = torch.full((len(groups), pmax), pad_id, dtype=torch.long)
    pmask = torch.zeros((len(groups), pmax), dtype=torch.long)
    for i, g in enumerate(groups):
        pids[i, :plens[i]] = torch.tensor(prompts[g], dtype=torch.long)
        pmask[i, :plens[i]] = 1
    pos = torch.arange(pmax).unsqueeze(0).expand(len(groups), -1)
    out = body(input_ids=pids.to(dev), attention_mask=pmask.to(dev), position_ids=pos.to(dev),
               use_cache=True)
    cache = out.past_key_values
    if not kv.supported(cache, pmax + cmax):
        return score_naive(model, rows, len(rows), pad_id)
    last = torch.tensor([n - 1 for n in plens], dtype=torch.long, device=dev)
    h_last = out.last_hidden_state[torch.arange(len(groups), device=dev), last]  # [G, H]
    del out

    # pass 2: continuations (all but their last token are inputs), prompt cache rows repeated
    width = max(1, cmax - 1)
    cids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    cmask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, it in enumerate(rows):
        n = len(it.cont) - 1
        if n > 0:
            cids[r, :n] = torch.tensor(it.cont[:n], dtype=torch.long)
            cmask[r, :n] = 1
    idx = torch.tensor(row_slot, dtype=torch.long)
    h_cont = None
    if cmax > 1:
        rcache = kv.select_rows(cache, idx.to(dev))
        mask = torch.cat([pmask.index_select(0, idx), cmask], dim=1)
        cpos = torch.tensor([plens[s] for s in row_slot], dtype=torch.long).unsqueeze(1) + torch.arange(width)
        h_cont = body(input_ids=cids.to(dev), attention_mask=mask.to(dev), position_ids=cpos.to(dev),
                      past_key_values=rcache, use_cache=True).last_hidden_state  # [R, W, H]
        del rcache
    del cache

    # gather the hidden states whose next-token distribution is needed, in row order:
    # flat = [prompt last states (G rows); continuation states (R × width rows)]
    g = len(groups)
    gather, tgts = [], []
    for r, it in enumerate(rows):
        for t, tok in enumerate(it.cont):
            gather.append(row_slot[r] if t == 0 else g + r * width + t - 1)
            tgts.append(tok)
    parts = [h_last] if h_cont is None else [h_last, h_cont.reshape(-1, h_last.shape[-1])]
    hid = torch.cat(parts, dim=0).index_select(0, torch.tensor(gather, dtype=torch.long, device=dev))
    del h_cont, parts
    vocab = int(getattr(model.get_output_embeddings(), "out_features", 0) or 1 << 16)
    scores = _token_scores(lambda h: lm_head(model, h), hid, torch.tensor(tgts, dtype=torch.long, device=dev),
                           _stats_mask(rows, dev), vocab)
    return _split(rows, scores)
