"""Planning of likelihood batches (pure python): nothing lost, nothing doubled, budget kept."""

from __future__ import annotations

import random

import pytest

from bench.backends.batching import (
    Chunk,
    batch_cost,
    fixed_batches,
    group_by_key,
    pack_chunks,
    plan_batches,
    split_group,
)


def _check_plan(prompt_lens, cont_lens, budget):
    batches = plan_batches(prompt_lens, cont_lens, budget)
    seen = []
    for batch in batches:
        rows = sum(ch.rows for ch in batch)
        pmax = max(ch.prompt_len for ch in batch)
        cmax = max(ch.max_cont_len for ch in batch)
        # a batch over budget is a single row that alone exceeds it
        if batch_cost(rows, pmax, cmax) > budget:
            assert rows == 1 and pmax + cmax > budget
        for ch in batch:
            assert ch.prompt_len == prompt_lens[ch.group]
            assert ch.max_cont_len == max(cont_lens[ch.group][c] for c in ch.conts)
            seen.extend((ch.group, c) for c in ch.conts)
    expected = [(g, c) for g in range(len(prompt_lens)) for c in range(len(cont_lens[g]))]
    assert sorted(seen) == expected  # every pair exactly once
    return batches


def test_group_by_key_keeps_first_seen_order_and_every_position():
    distinct, members = group_by_key(["a", "b", "a", "c", "b", "a"])
    assert distinct == ["a", "b", "c"]
    assert members == [[0, 2, 5], [1, 4], [3]]


def test_group_by_key_empty():
    assert group_by_key([]) == ([], [])


def test_split_group_longest_first_and_budget():
    # prompt 10, continuations 5, 20, 1, 20; budget 64: rows*(10+20) ≤ 64 → 2 rows per chunk
    chunks = split_group(7, 10, [5, 20, 1, 20], 64)
    assert [c.conts for c in chunks] == [(1, 3), (0, 2)]
    assert [c.max_cont_len for c in chunks] == [20, 5]
    assert all(c.group == 7 and c.prompt_len == 10 for c in chunks)


def test_oversized_single_request_runs_alone():
    batches = _check_plan([3, 50, 4], [[2], [100], [2, 3]], budget=40)
    alone = [b for b in batches if any(ch.group == 1 for ch in b)]
    assert len(alone) == 1 and len(alone[0]) == 1 and alone[0][0].rows == 1


def test_whole_groups_pack_together_when_they_fit():
    batches = _check_plan([10, 10, 10], [[5, 5], [5], [5, 5, 5]], budget=1000)
    assert len(batches) == 1 and batch_cost(6, 10, 5) == 90


def test_budget_forces_splits_exactly():
    # each row costs 10+5 = 15; budget 45 → at most 3 rows per batch; 6 rows → 2 batches
    batches = _check_plan([10, 10, 10], [[5, 5], [5], [5, 5, 5]], budget=45)
    assert [sum(ch.rows for ch in b) for b in batches] == [3, 3]


def test_sorted_longest_first():
    chunks = [Chunk(0, (0,), 2, 2), Chunk(1, (0,), 9, 9), Chunk(2, (0,), 5, 5)]
    batches = pack_chunks(chunks, budget=18)
    assert [[c.group for c in b] for b in batches] == [[1], [2], [0]]


@pytest.mark.parametrize("seed", range(12))
def test_random_plans_cover_everything_within_budget(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 30)
    prompt_lens = [rng.randint(1, 60) for _ in range(n)]
    cont_lens = [[rng.randint(0, 80) for _ in range(rng.randint(1, 9))] for _ in range(n)]
    _check_plan(prompt_lens, cont_lens, budget=rng.choice([1, 50, 200, 1000, 10**6]))


def test_bad_budget_and_batch_size():
    with pytest.raises(ValueError):
        plan_batches([1], [[1]], 0)
    with pytest.raises(ValueError):
        fixed_batches(3, 0)


def test_fixed_batches_in_order():
    assert [list(r) for r in fixed_batches(7, 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert fixed_batches(0, 4) == []
