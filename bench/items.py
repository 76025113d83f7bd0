"""The data every task produces: QA items, eval sets, and the splits a method sees."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Item:
    """One question/answer item in TOFU's shape.

    ``paraphrased_answer`` and ``perturbed_answers`` are present on the perturbed eval sets
    (truth ratio); on real-authors / world-facts sets the perturbed answers are the wrong
    options. ``meta`` holds anything task-specific (author id, task id, options...).
    """

    id: str
    question: str
    answer: str
    paraphrased_answer: str | None = None
    perturbed_answers: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class MetricSpec:
    """A metric to run on an eval set: registry ``name``, constructor ``options``, result ``key``."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    key: str | None = None

    @property
    def result_key(self) -> str:
        return self.key or self.name


@dataclass
class EvalSet:
    """A named eval set, its items, the metrics that apply to it, and its generation budget.

    ``role`` is "forget" (lower memorisation is the goal) or "retain" (utility).
    """

    name: str
    items: list[Item]
    metrics: list[MetricSpec]
    role: str = "retain"
    max_new_tokens: int = 200
    source: str = ""


@dataclass
class TaskData:
    """What a task loads: training splits for methods and ``prepare``, eval sets, provenance.

    * ``forget`` / ``retain``: what an unlearning method trains on.
    * ``full``: the target model's fine-tuning set (``bench prepare``); the retain-only
      reference model is fine-tuned on ``retain``.
    * ``pretrain``: optional general-knowledge QA for building a tiny base model offline.
    * ``files``: every data file read, with its sha256 (recorded in results.json).
    """

    forget: list[Item]
    retain: list[Item]
    full: list[Item]
    eval_sets: list[EvalSet]
    files: dict[str, str] = field(default_factory=dict)
    pretrain: list[Item] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    source: str = ""
