"""Pure-python planning of likelihood batches: grouping by prompt, packing by token budget.

The fast likelihood path runs each distinct prompt once and scores all its continuations
against the prompt's KV cache. This module decides *what goes together*; it knows no
torch. Lengths are token counts.

Cost model (the token budget bounds it): a batch holds whole or partial *groups* (one
prompt and some of its continuations). Its cost is ``rows × (P_max + C_max)`` where
``rows`` is the number of continuation rows, ``P_max`` the longest prompt and ``C_max``
the longest continuation in the batch: every continuation row carries its prompt's cache
(padded to ``P_max``) plus its own padded tokens in the second forward pass, and the first
(prompt) pass costs ``prompts × P_max ≤ rows × P_max``. So the sum of padded lengths of
either pass never exceeds the budget, except for a single row that alone exceeds it,
which is run alone.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Chunk:
    """Some continuations of one group: ``group`` index and indices into its continuations."""

    group: int
    conts: tuple[int, ...]
    prompt_len: int
    max_cont_len: int

    @property
    def rows(self) -> int:
        return len(self.conts)


def batch_cost(rows: int, max_prompt_len: int, max_cont_len: int) -> int:
    """Padded tokens of a batch under the cost model above."""
    return rows * (max_prompt_len + max_cont_len)


def group_by_key(keys: Sequence[K]) -> tuple[list[K], list[list[int]]]:
    """Distinct keys in first-seen order and, for each, the positions where it occurs.

    ``keys[j]`` for ``j in members[i]`` equals ``distinct[i]``; every position appears in
    exactly one member list.
    """
    index: dict[K, int] = {}
    distinct: list[K] = []
    members: list[list[int]] = []
    for j, k in enumerate(keys):
        i = index.get(k)
        if i is None:
            i = index[k] = len(distinct)
            distinct.append(k)
            members.append([])
        members[i].append(j)
    return distinct, members


def split_group(group: int, prompt_len: int, cont_lens: Sequence[int], budget: int) -> list[Chunk]:
    """Split one group's continuations into chunks that each fit ``budget``.

    Continuations are taken longest first, so a chunk's first member sets its
    ``max_cont_len``; a continuation that alone exceeds the budget gets a chunk of its own.
    """
    order = sorted(range(len(cont_lens)), key=lambda i: (-cont_lens[i], i))
    chunks: list[Chunk] = []
    cur: list[int] = []
    cur_max = 0
    for i in order:
        c = cont_lens[i]
        new_max = max(cur_max, c)
        if cur and batch_cost(len(cur) + 1, prompt_len, new_max) > budget:
            chunks.append(Chunk(group, tuple(cur), prompt_len, cur_max))
            cur, new_max = [], c
        cur.append(i)
        cur_max = new_max
    if cur:
        chunks.append(Chunk(group, tuple(cur), prompt_len, cur_max))
    return chunks


def pack_chunks(chunks: Sequence[Chunk], budget: int) -> list[list[Chunk]]:
    """Pack chunks into batches of cost ≤ ``budget``, longest first to minimise padding.

    Chunks are sorted by ``prompt_len + max_cont_len`` (then prompt length) descending and
    packed greedily in that order; a chunk never is split here (see :func:`split_group`).
    """
    order = sorted(chunks, key=lambda c: (-(c.prompt_len + c.max_cont_len), -c.prompt_len, c.group))
    batches: list[list[Chunk]] = []
    cur: list[Chunk] = []
    rows = pmax = cmax = 0
    for ch in order:
        r, p, c = rows + ch.rows, max(pmax, ch.prompt_len), max(cmax, ch.max_cont_len)
        if cur and batch_cost(r, p, c) > budget:
            batches.append(cur)
            cur, r, p, c = [], ch.rows, ch.prompt_len, ch.max_cont_len
        cur.append(ch)
        rows, pmax, cmax = r, p, c
    if cur:
        batches.append(cur)
    return batches


def plan_batches(prompt_lens: Sequence[int], cont_lens: Sequence[Sequence[int]],
                 budget: int) -> list[list[Chunk]]:
    """Plan the fast likelihood batches for groups ``i`` with prompt length
    ``prompt_lens[i]`` and continuation lengths ``cont_lens[i]``.

    Every (group, continuation) pair appears in exactly one chunk of one batch.
    """
    if budget < 1:
        raise ValueError(f"token budget must be ≥ 1, got {budget}")
    chunks: list[Chunk] = []
    for g, (p, cl) in enumerate(zip(prompt_lens, cont_lens, strict=True)):
        chunks.extend(split_group(g, p, cl, budget))
    return pack_chunks(chunks, budget)


def fixed_batches(n: int, size: int) -> list[range]:
    """``range`` s of ``size`` consecutive indices covering ``0..n-1`` in order (naive mode)."""
    if size < 1:
        raise ValueError(f"batch size must be ≥ 1, got {size}")
    return [range(i, min(i + size, n)) for i in range(0, n, size)]
