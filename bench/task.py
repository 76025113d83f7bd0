"""The task contract: where data comes from, which sets are evaluated with which metrics,
and how per-set results aggregate into the task's headline numbers.

A task is a class registered in ``bench.registry.TASKS`` (definitions live in ``tasks/``,
installed as ``bench.tasks``). ``family`` names the models a task shares with its
siblings: ``tofu-forget01/05/10`` share one full (target) model, and each has its own
retain-only reference model (``reference_key``).

Options: a task's ``__init__`` keyword parameters (typed, with defaults) are its options,
set from the command line with ``--task-set key=value`` and checked exactly like a
method's ``--set`` (:func:`bench.adapters.parse_options`); they are recorded in results
and are part of the run's hash. ``bench list tasks`` shows them.

Headline numbers: the task's derived nodes (``TaskData.derived``, :mod:`bench.graph`)
plus every set aggregate as ``<set>_<metric>``. ``headline`` names the columns a report
and the run summary show first; ``frontier`` names the two axes of the forget-efficacy
vs utility plot: ``(efficacy key, utility key)``, each a results aggregate key, with
``efficacy_higher_is_better`` saying which way the efficacy key points.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bench.items import TaskData


@dataclass
class SetResult:
    """Results of one eval set: aggregate per metric key, per-item values in item order."""

    name: str
    item_ids: list[str]
    aggregates: dict[str, float | None] = field(default_factory=dict)
    per_item: dict[str, list[Any]] = field(default_factory=dict)

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
    # split sizes as `bench list tasks` shows them (e.g. "forget 40, retain 3960; eval ...")
    sizes: ClassVar[str] = ""
    headline: ClassVar[tuple[str, ...]] = ()
    frontier: ClassVar[tuple[str, str]] = ("", "")
    efficacy_higher_is_better: ClassVar[bool] = True

    def __init__(self, **options: Any) -> None:
        if options:
            raise TypeError(f"task '{self.name}' takes no options (got {', '.join(options)})")

    def options(self) -> dict[str, Any]:
        """The options this task was built with (recorded in results; part of the run hash)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def load(self, data_dir: Path | None = None, limit: int | None = None) -> TaskData:
        """Read (or generate) the task's data. ``limit`` caps the items of each *eval* set
        only; training splits (and so the prepared models) never depend on it."""
        raise NotImplementedError
