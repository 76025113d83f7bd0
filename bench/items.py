"""The data every task produces: QA items, eval sets, and the splits a method sees."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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


# How an item becomes requests (see :mod:`bench.formats`):
#   "model"    the model's prompt config: chat template or plain ``Question: … Answer:``
#   "raw"      ``item.question`` as is (BOS where the model uses one, no template), the
#              continuation ``item.answer`` verbatim (nothing appended)
#   "document" the likelihood of the whole text ``item.answer`` from its first token (after
#              the model's BOS, if any), chunked at the model's context (rolling windows)
#   "chat"     ``item.question`` as the user turn of the model's chat template (with the
#              generation prompt; BOS + the text as is for a model without one), then the
#              item's answer lead ``item.meta["answer_lead"]`` (e.g. RWKU's "Answer:");
#              the continuation verbatim (nothing appended). RWKU prompts this way.
FORMATS = ("model", "raw", "document", "chat")


def check_format(fmt: str, where: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"{where}: unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    return fmt


@dataclass
class EvalSet:
    """A named eval set, its items, the metrics that apply to it, and how it is prompted.

    ``role`` is "forget" (lower memorisation is the goal) or "retain" (utility).
    ``format`` is one of :data:`FORMATS`; ``stop`` are the strings that end a generation
    (the text is cut before the first one); ``max_new_tokens`` is the generation budget.
    Few-shot prompts are rendered by the task into ``item.question`` (format "raw").
    """

    name: str
    items: list[Item]
    metrics: list[MetricSpec]
    role: str = "retain"
    max_new_tokens: int = 200
    source: str = ""
    format: str = "model"
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_format(self.format, f"eval set '{self.name}'")

    def describe(self) -> dict[str, Any]:
        """What decides this set's requests (recorded in results, compared for references)."""
        return {"format": self.format, "stop": list(self.stop), "max_new_tokens": self.max_new_tokens,
                "items": len(self.items), "source": self.source}


class Split(list):
    """A training split: a list of items that also says its ``format`` (see :data:`FORMATS`).

    Methods see it as the plain sequence of items their contract promises; the training
    loop reads ``format``: "model"/"raw" items are (prompt, answer) pairs, "document" items
    are texts (``item.answer``) cut into ``max_length`` windows, every token a label.
    """

    def __init__(self, items: Iterable[Item] = (), format: str = "model") -> None:
        super().__init__(items)
        self.format = check_format(format, "training split")


def split_format(items: Sequence[Item]) -> str:
    """The format of a training split (``"model"`` for a plain list)."""
    return getattr(items, "format", "model")


@dataclass
class Step:
    """One unlearning step of a multi-step task: what it forgets, keeps and evaluates."""

    name: str
    forget: Sequence[Item]
    retain: Sequence[Item]
    eval_sets: list[EvalSet]


@dataclass
class TaskData:
    """What a task loads: training splits for methods and ``prepare``, eval sets, provenance.

    * ``forget`` / ``retain``: what an unlearning method trains on.
    * ``full``: the target model's fine-tuning set (``bench prepare``); the retain-only
      reference model is fine-tuned on ``retain``.
    * ``pretrain``: optional general-knowledge QA for building a tiny base model offline.
    * ``files``: every data file read, with its sha256 (recorded in results.json).
    * ``derived``: the derived metrics (nodes of the metric graph, :mod:`bench.graph`)
      computed from the per-set results, e.g. forget quality, model utility, MIA AUC.
    * ``steps``: a multi-step task's steps, in order (continual unlearning, MUSE's
      sustainability); empty for a one-step task, whose one step is (forget, retain,
      eval_sets). Each step's results get the same ``derived`` nodes.
    """

    forget: Sequence[Item]
    retain: Sequence[Item]
    full: list[Item]
    eval_sets: list[EvalSet]
    files: dict[str, str] = field(default_factory=dict)
    pretrain: list[Item] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    derived: list[Any] = field(default_factory=list)  # list[bench.graph.Derived]
    steps: list[Step] = field(default_factory=list)

    def all_steps(self) -> list[Step]:
        """The steps to run: ``steps``, or the one step of a one-step task."""
        return list(self.steps) or [Step("main", self.forget, self.retain, self.eval_sets)]
