"""The task contract: where data comes from, which sets are evaluated with which metrics,
and how per-set results aggregate into the task's headline numbers.

A task is a class registered in ``bench.registry.TASKS`` (definitions live in ``tasks/``,
installed as ``bench.tasks``). ``family`` names the models a task shares with its
siblings: ``tofu-forget01/05/10`` share one full (target) model, and each has its own
retain-only reference model (``reference_key``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from bench.items import TaskData


@dataclass
class SetResult:
    """Results of one eval set: aggregate per metric key, per-item values in item order."""

    name: str
    item_ids: list[str]
    aggregates: dict[str, float | None] = field(default_factory=dict)
    per_item: dict[str, list[float | None]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "item_ids": self.item_ids, "aggregates": self.aggregates,
                "per_item": self.per_item}

    @classmethod
    def from_dict(cls, d: Mapping) -> SetResult:
        return cls(d["name"], list(d["item_ids"]), dict(d["aggregates"]), dict(d["per_item"]))


class Task:
    """Base class for tasks. Subclasses set the class attributes and implement ``load``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    family: ClassVar[str] = ""
    # names the retain-only reference model of this task within its family, e.g. "retain99"
    reference_key: ClassVar[str] = ""
    # environment variable consulted when --data-dir is not given
    data_env: ClassVar[str] = "BENCH_DATA_DIR"

    def load(self, data_dir: Path | None = None, limit: int | None = None) -> TaskData:
        """Read (or generate) the task's data. ``limit`` caps the items of each eval set."""
        raise NotImplementedError

    def aggregates(
        self,
        sets: Mapping[str, SetResult],
        reference: Mapping[str, SetResult] | None,
    ) -> dict[str, float | None]:
        """Headline numbers from the per-set results (and the retain-model reference, if any)."""
        return {}
