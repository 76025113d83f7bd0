"""SemEval-2025 Task 4 aggregate over a subset of the subtasks (one subtask's 4 numbers).

The organisers' ``compute_metrics`` groups each split by ``task`` and takes the harmonic
mean of every (subtask, score) mean it finds, forget values as ``1 − x``: on data of one
subtask that is 4 numbers (forget/retain × regurgitation/knowledge), on the full data the
12 of :func:`bench.metrics.semeval.semeval_task_aggregate`. This node is the former, for
the single-subtask tasks (``semeval25-task1`` …); the 12-way node is not duplicated here
(both call :func:`bench.scores.semeval_task_aggregate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench import scores
from bench.errors import BenchError
from bench.metrics.derived import derived
from bench.metrics.semeval import per_task_means


@derived("semeval_subtask_aggregate",
         "SemEval-2025 aggregate of the given subtasks: harmonic mean of 4 per subtask (forget as 1 - x)",
         outputs=("semeval_subtask_aggregate",))
def semeval_subtask_aggregate(forget_regurgitation: Sequence[Any], forget_knowledge: Sequence[Any],
                              retain_regurgitation: Sequence[Any], retain_knowledge: Sequence[Any],
                              subtasks: Sequence[str] = ("Task1",)) -> dict[str, float | None]:
    """Per-subtask means of the per-item ``semeval_regurgitation`` / ``semeval_knowledge``
    values (``{"task", "score"}``) of both splits, restricted to ``subtasks``, then the
    harmonic mean of the ``4 · len(subtasks)`` numbers with forget values as ``1 − x``
    (one 0 -> 0; a subtask without items of a kind -> ``None``, never a mean over fewer).
    Per-item values of other subtasks -> BenchError (the set holds items it should not).

    Returns ``semeval_subtask_aggregate`` and the inputs as ``semeval_<split>_<Task>_<score>``.
    Higher = better.
    """
    subtasks = tuple(subtasks)
    unknown = [t for t in subtasks if t not in scores.SEMEVAL_TASKS]
    if not subtasks or unknown:
        raise BenchError(f"semeval_subtask_aggregate: unknown subtask {unknown[0] if unknown else '(none)'!r} "
                         f"(expected some of {', '.join(scores.SEMEVAL_TASKS)})")
    splits = {"forget": (forget_regurgitation, forget_knowledge), "retain": (retain_regurgitation, retain_knowledge)}
    means: dict[str, dict[str, float | None]] = {}
    for split, (reg, know) in splits.items():
        for values in (reg, know):
            for v in values:
                if v is not None and v.get("task") not in subtasks:
                    raise BenchError(f"semeval_subtask_aggregate: {split} set holds an item of subtask "
                                     f"{v.get('task')!r}, not one of {', '.join(subtasks)}")
        m = {**per_task_means(reg, "regurgitation"), **per_task_means(know, "knowledge")}
        means[split] = {k: v for k, v in m.items() if k.split("/")[0] in subtasks}
    out: dict[str, float | None] = {"semeval_subtask_aggregate": scores.semeval_task_aggregate(
        means["forget"], means["retain"], expected=4 * len(subtasks))}
    for split, m in means.items():
        for k, v in m.items():
            task, label = k.split("/")
            out[f"semeval_{split}_{task}_{label}"] = v
    return out


semeval_subtask_aggregate.higher_is_better = True  # type: ignore[attr-defined]
semeval_subtask_aggregate.applies_to = "per-item regurgitation/knowledge of one subtask's forget and retain sets (derived)"  # type: ignore[attr-defined]
