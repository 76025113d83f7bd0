"""TOFU (Maini et al. 2024): forget 1 / 5 / 10 % of 200 fictitious authors, scored as in
open-unlearning.

Data: a local folder in the layout of the hub dataset ``locuslab/TOFU`` (one file per hub
config: ``forget01.json``, ``forget01_perturbed.json``, ``retain99.json``,
``retain_perturbed.json``, ``real_authors_perturbed.json``, ``world_facts_perturbed.json``,
``holdout01.json``, ``full.json``, plus ``idontknow.jsonl``), given as ``--data-dir`` (the
``tofu`` folder itself or its parent) or through ``$BENCH_DATA_DIR``; without either, the
same configs are read from the hub (refusals from ``open-unlearning/idk``).

Eval sets (item ids ``"<set>/<row>"``), generation budget 200 new tokens (open-unlearning):

* ``forget`` (``forgetXX_perturbed``, role forget): probability, ROUGE-L, truth ratio
  (forget aggregation ``mean(min(R, 1/R))``), extraction strength, exact memorization.
* ``retain`` (``retain_perturbed``): probability, ROUGE-L, truth ratio (``max(0, 1 - 1/R)``).
* ``real_authors`` / ``world_facts`` (``*_perturbed``): normalised probability over the
  answer and its 3 wrong options, ROUGE-L, truth ratio with the answer itself as the
  "paraphrase".

Headline numbers (:func:`tofu_derived` nodes, :func:`tofu_aggregates`): ``forget_quality`` and its ``log10`` (KS test
against the retain-only reference model), ``model_utility`` (harmonic mean of 9), and every
set's aggregates as ``<set>_<metric>``. The synthetic task (:mod:`bench.tasks.synthetic`)
reuses this module's eval-set builder and aggregates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from bench.data import STR_LIST, TEXT, SplitSource, data_hint, require, resolve_data_dir
from bench.errors import BenchError
from bench.graph import Derived, Ref, Results, aggregates
from bench.items import EvalSet, Item, MetricSpec, TaskData
from bench.registry import TASKS
from bench.scorers import EMBEDDING_MODEL, GIBBERISH_MODEL, NLI_MODEL
from bench.task import SetResult, Task

HUB_REPO = "locuslab/TOFU"
DATA_HINT = ("use an unchanged copy of TOFU's split files (the hub's locuslab/TOFU, one file per config) "
             "in --data-dir, or leave --data-dir out to read the hub")
IDK_HUB_FILE = ("open-unlearning/idk", "idk.jsonl")  # open-unlearning's copy of the refusals
DATA_SUBDIR = "tofu"
REFUSALS_FILE = "idontknow.jsonl"
MAX_NEW_TOKENS = 200  # open-unlearning's TOFU generation budget

# --- which metrics run on which set -------------------------------------------------------

FORGET_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("probability", {"normalized": False}),
    MetricSpec("rouge_l"),
    MetricSpec("truth_ratio", {"mode": "forget", "paraphrase_field": "paraphrased_answer"}),
    MetricSpec("extraction_strength"),
    MetricSpec("exact_memorization"),
)
RETAIN_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("probability", {"normalized": False}),
    MetricSpec("rouge_l"),
    MetricSpec("truth_ratio", {"mode": "retain", "paraphrase_field": "paraphrased_answer"}),
)
# real authors / world facts: the perturbed answers are the wrong options
OPTIONS_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("probability", {"normalized": True}),
    MetricSpec("rouge_l"),
    MetricSpec("truth_ratio", {"mode": "retain", "paraphrase_field": "answer"}),
)

EVAL_SET_NAMES = ("forget", "retain", "real_authors", "world_facts")
# model utility = harmonic mean over these sets x these metric keys (9 numbers)
UTILITY_SETS = ("retain", "real_authors", "world_facts")
UTILITY_METRICS = ("probability", "rouge_l", "truth_ratio")

QA_FIELDS = {"question": TEXT, "answer": TEXT}
PERTURBED_FIELDS = {**QA_FIELDS, "paraphrased_answer": TEXT, "perturbed_answer": STR_LIST}
OPTIONS_FIELDS = {**QA_FIELDS, "perturbed_answer": STR_LIST}


def check_limit(limit: int | None) -> None:
    """Raise a BenchError unless ``limit`` is ``None`` or a positive integer."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise BenchError(f"limit must be a positive integer or None, got {limit!r}")


def qa_items(rows: Sequence[dict], prefix: str, where: Any, limit: int | None = None) -> list[Item]:
    """Plain question/answer rows as items ``"<prefix>/<row>"`` (the first ``limit`` rows;
    every row is checked, also those past ``limit``, so a quick look fails like a full run)."""
    out = []
    for i, r in enumerate(rows):
        require(r, QA_FIELDS, where, i)
        meta = {k: v for k, v in r.items() if k not in QA_FIELDS}
        out.append(Item(f"{prefix}/{i}", r["question"], r["answer"], meta=meta))
    return out if limit is None else out[:limit]


def perturbed_items(
    rows: Sequence[dict], prefix: str, where: Any, *, options: bool, limit: int | None = None
) -> list[Item]:
    """Rows with ``perturbed_answer`` as items ``"<prefix>/<row>"`` (the first ``limit``;
    every row is checked, as in :func:`qa_items`).

    ``options=False``: forget/retain rows, which also need ``paraphrased_answer``
    (``paraphrased_question`` goes to ``meta``). ``options=True``: real authors / world
    facts rows, whose ``perturbed_answer`` are the wrong options (no paraphrase).
    """
    fields = OPTIONS_FIELDS if options else PERTURBED_FIELDS
    out = []
    for i, r in enumerate(rows):
        require(r, fields, where, i)
        meta = {k: v for k, v in r.items() if k not in fields}
        out.append(
            Item(
                f"{prefix}/{i}",
                r["question"],
                r["answer"],
                paraphrased_answer=None if options else r["paraphrased_answer"],
                perturbed_answers=tuple(r["perturbed_answer"]),
                meta=meta,
            )
        )
    return out if limit is None else out[:limit]


def tofu_eval_sets(
    rows: Mapping[str, Sequence[dict]],
    where: Mapping[str, Any],
    *,
    max_new_tokens: int,
    limit: int | None = None,
    sources: Mapping[str, str] | None = None,
) -> list[EvalSet]:
    """TOFU's four eval sets, in the order ``forget, retain, real_authors, world_facts``.

    ``rows[name]`` are the perturbed rows of set ``name`` in TOFU's format; ``where[name]``
    names their file in error messages; ``sources[name]`` (default ``where[name]``) is
    recorded as ``EvalSet.source``.
    """
    spec = {
        "forget": ("forget", FORGET_METRICS, False),
        "retain": ("retain", RETAIN_METRICS, False),
        "real_authors": ("retain", OPTIONS_METRICS, True),
        "world_facts": ("retain", OPTIONS_METRICS, True),
    }
    sets = []
    for name in EVAL_SET_NAMES:
        role, metrics, options = spec[name]
        items = perturbed_items(rows[name], name, where[name], options=options, limit=limit)
        sets.append(
            EvalSet(name, items, list(metrics), role=role, max_new_tokens=max_new_tokens,
                    source=str((sources or where)[name]))
        )
    return sets


def tofu_derived() -> list[Derived]:
    """TOFU's derived metrics as graph nodes (open-unlearning's names).

    * ``forget_quality`` (+ ``log10_forget_quality``): KS test between this run's per-item
      truth ratios on the forget set and the retain-only reference model's on the same
      items (role ``retain``). Higher = closer to the retain-only model. Missing (``None``,
      with a note) without a reference.
    * ``model_utility``: harmonic mean of the 9 aggregates ``{retain, real_authors,
      world_facts} x {probability, rouge_l, truth_ratio}`` (a zero makes it zero; ``None``
      when one is missing).
    """
    return [
        Derived("forget_quality", {"r_unlearned": Ref("forget/truth_ratio"),
                                   "r_reference": Ref("forget/truth_ratio", role="retain")}),
        Derived("model_utility", {"values": {f"{s}_{m}": Ref(f"{s}/{m}", per_item=False)
                                             for s in UTILITY_SETS for m in UTILITY_METRICS}}),
    ]


def tofu_aggregates(
    sets: Mapping[str, SetResult], reference: Mapping[str, SetResult] | None
) -> dict[str, float | None]:
    """TOFU's headline numbers for per-set results (and the retain-only reference's):
    the nodes of :func:`tofu_derived` computed by :func:`bench.graph.aggregates`, then every
    set aggregate as ``<set>_<metric>`` (e.g. ``forget_rouge_l``). Raises
    :class:`BenchError` when the reference's forget set holds other items."""
    runs = {"self": Results(sets)}
    if reference is not None:
        runs["retain"] = Results(reference)
    values, _ = aggregates(tofu_derived(), runs)
    return values


# --- opt-in metric families (task options closer_look / mia / gibberish / bootstrap) --------

# closer-look (seed 004): MU over the non-forget sets' six metrics, FE over the forget set's five
CLOSER_LOOK_MU_SETS = ("retain", "real_authors", "world_facts")
CLOSER_LOOK_MU_METRICS = ("rouge_l", "probability", "truth_ratio", "token_entropy",
                          "cosine_similarity", "entailment")
CLOSER_LOOK_FE_METRICS = ("rouge_l", "probability", "truth_ratio", "cosine_similarity", "entailment")
# membership inference on forget (members) vs holdout (non-members), open-unlearning's TOFU_MIA
MIA_ATTACKS = ("mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus")


def closer_look_extension(eval_sets: Sequence[EvalSet], *, cs_model: str, nli_model: str,
                          retain_premise: str = "reference", cs_field: str = "answer",
                          mu_sets: Sequence[str] = CLOSER_LOOK_MU_SETS) -> list[Derived]:
    """Add TE, CS and ES to the sets (in place) and return the MU / FE nodes.

    ES direction as closer-look's TOFU evaluation: premise = generation on the forget set,
    premise = the reference answer on retain / real authors / world facts
    (``retain_premise="reference"``; its real-world task uses ``"generation"`` on both).
    CS compares with ``cs_field`` (real-world: the field holding the original model's
    answer, while R and the ES gate use ``item.answer`` = ``golden_answer``); on TOFU both
    compare with ``item.answer`` (closer-look's own real-authors / world-facts files carry a
    longer ``original_answer`` that ``locuslab/TOFU`` lacks). closer-look evaluates the first
    300 items of a set (``ds_size``) and caps prompt + output at 200 tokens: use
    ``--limit 300`` to match the first; the second is TOFU's 200 *new* tokens here.
    """
    present = {es.name for es in eval_sets}
    for es in eval_sets:
        premise = "generation" if es.name == "forget" else retain_premise
        es.metrics = list(es.metrics) + [
            MetricSpec("token_entropy"),
            MetricSpec("cosine_similarity", {"model": cs_model, "reference_field": cs_field}),
            MetricSpec("entailment", {"model": nli_model, "premise": premise}),
        ]
    mu_sets = [s for s in mu_sets if s in present]
    return [
        Derived("closer_look_mu", {"values": {f"{s}_{m}": Ref(f"{s}/{m}", per_item=False)
                                              for s in mu_sets for m in CLOSER_LOOK_MU_METRICS}}),
        Derived("closer_look_fe", {"values": {m: Ref(f"forget/{m}", per_item=False)
                                              for m in CLOSER_LOOK_FE_METRICS}}),
    ]


def mia_extension(eval_sets: Sequence[EvalSet], holdout: Sequence[Item], *, k: float,
                  max_new_tokens: int, source: str = "") -> tuple[EvalSet, list[Derived]]:
    """Add the MIA scores to the forget set (in place), build the ``holdout`` set with the
    same scores, and return it with the AUC nodes (``<attack>_auc``, members = forget,
    higher score = member) and ``privleak`` (min-k AUC against the retain-only run's, as
    open-unlearning's TOFU ``privleak``; missing without a retain-only reference). The
    QA answers' likelihood requests are the ones ``probability`` already makes."""
    from bench.metrics.mia import auc_nodes, benchmark_specs

    specs = [MetricSpec(s.name, {**s.options, "k": k} if "min_k" in s.name else dict(s.options))
             for s in benchmark_specs("tofu")]
    forget = next(es for es in eval_sets if es.name == "forget")
    forget.metrics = list(forget.metrics) + specs
    hold = EvalSet("holdout", list(holdout), list(specs), role="holdout", max_new_tokens=max_new_tokens,
                   source=source)
    return hold, auc_nodes("forget", "holdout", MIA_ATTACKS, privleak_attack="mia_min_k", reference_role="retain")


def bootstrap_nodes(eval_sets: Sequence[EvalSet], n_resamples: int, seed: int = 0) -> list[Derived]:
    """A ``bootstrap_ci`` node per (set, metric): ``<set>_<key>_ci_low/high`` around the set's
    own aggregate (the metric's ``aggregate`` is the statistic), seeded, resamples recorded."""
    return [Derived("bootstrap_ci", {"values": Ref(f"{es.name}/{m.result_key}")},
                    options={"name": f"{es.name}_{m.result_key}", "metric": m.name,
                             "metric_options": dict(m.options), "n_resamples": n_resamples, "seed": seed},
                    key=f"{es.name}_{m.result_key}_ci")
            for es in eval_sets for m in es.metrics]


class TofuStyleTask(Task):
    """A task with TOFU's eval sets, metrics and derived nodes (TOFU and the synthetic task).

    Options (``--task-set``), all off by default:

    * ``closer_look=true``: closer-look's TE, CS, ES on every set and its MU / FE nodes
      (``cs_model``, ``nli_model``: hub ids or local directories of the scorer models);
    * ``mia=true``: loss / zlib / min-k / min-k++ (``mia_k``) on the forget set and a
      ``holdout`` set, their AUCs (members = forget) and ``privleak`` against the retain-only
      reference run;
    * ``gibberish=true``: the gibberish classifier's clean probability on the forget set's
      generations (``gibberish_model``);
    * ``bootstrap=N``: N-resample bootstrap intervals of every set aggregate (seed 0).
    """

    forget_split: ClassVar[str] = ""  # "forget01" | "forget05" | "forget10"
    holdout_split: ClassVar[str] = ""
    max_new_tokens: ClassVar[int] = MAX_NEW_TOKENS
    headline = ("model_utility", "forget_quality", "log10_forget_quality", "forget_rouge_l",
                "retain_rouge_l", "forget_probability", "forget_truth_ratio",
                "forget_extraction_strength")
    frontier = ("log10_forget_quality", "model_utility")
    # option defaults also as class attributes: subclasses with their own __init__ keep them off
    closer_look = mia = gibberish = False
    bootstrap = 0
    mia_k = 0.4
    cs_model, nli_model, gibberish_model = EMBEDDING_MODEL, NLI_MODEL, GIBBERISH_MODEL

    def __init__(self, closer_look: bool = False, mia: bool = False, gibberish: bool = False,
                 bootstrap: int = 0, mia_k: float = 0.4, cs_model: str = EMBEDDING_MODEL,
                 nli_model: str = NLI_MODEL, gibberish_model: str = GIBBERISH_MODEL) -> None:
        if not 0 < mia_k <= 1:
            raise BenchError(f"task '{self.name}': mia_k must be in (0, 1], got {mia_k}")
        if bootstrap < 0:
            raise BenchError(f"task '{self.name}': bootstrap must be >= 0 resamples, got {bootstrap}")
        self.closer_look, self.mia, self.gibberish, self.bootstrap = closer_look, mia, gibberish, bootstrap
        self.mia_k = mia_k
        self.cs_model, self.nli_model, self.gibberish_model = cs_model, nli_model, gibberish_model
        extra: tuple[str, ...] = ()
        if closer_look:
            extra += ("closer_look_mu", "closer_look_fe", "forget_token_entropy", "forget_cosine_similarity")
        if mia:
            extra += ("mia_min_k_auc", "mia_loss_auc", "mia_zlib_auc", "mia_min_k_plus_plus_auc", "privleak")
        if gibberish:
            extra += ("forget_gibberish",)
        if extra:  # the report and run summary show the families that are on
            self.headline = type(self).headline + extra

    def options(self) -> dict[str, Any]:
        """Only the options that are on (so runs without them keep their hash)."""
        out: dict[str, Any] = {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "headline"}
        defaults = {"closer_look": False, "mia": False, "gibberish": False, "bootstrap": 0, "mia_k": 0.4,
                    "cs_model": EMBEDDING_MODEL, "nli_model": NLI_MODEL, "gibberish_model": GIBBERISH_MODEL}
        return {k: v for k, v in out.items() if defaults.get(k, object()) != v}

    def extend(self, data: TaskData) -> TaskData:
        """Apply the opt-in metric families to freshly loaded TOFU-shaped data (in place)."""
        nodes: list[Derived] = []
        if self.closer_look:
            nodes += closer_look_extension(data.eval_sets, cs_model=self.cs_model, nli_model=self.nli_model)
        if self.gibberish:
            for es in data.eval_sets:
                if es.name == "forget":
                    es.metrics = list(es.metrics) + [MetricSpec("gibberish", {"model": self.gibberish_model})]
        if self.mia:
            hold, mia_nodes = mia_extension(data.eval_sets, data.extras.get("holdout", []), k=self.mia_k,
                                            max_new_tokens=self.max_new_tokens, source=self.holdout_split)
            data.eval_sets = list(data.eval_sets) + [hold]
            nodes += mia_nodes
        if self.bootstrap:
            nodes += bootstrap_nodes(data.eval_sets, self.bootstrap)
        data.derived = list(data.derived) + nodes
        return data


class TofuTask(TofuStyleTask):
    """TOFU from a local copy of ``locuslab/TOFU`` or from the hub."""

    family = "tofu"

    def source(self, data_dir: Path | str | None) -> SplitSource:
        envs = tuple(dict.fromkeys((self.data_env, "BENCH_DATA_DIR")))
        folder = resolve_data_dir(data_dir, DATA_SUBDIR, "full.json", envs)
        return SplitSource(folder, HUB_REPO)

    @data_hint(DATA_HINT)
    def load(self, data_dir: Path | str | None = None, limit: int | None = None) -> TaskData:
        """Read the splits of this forget size (see the module docstring).

        ``limit`` keeps the first N items of each eval set and of the holdout set (what is
        evaluated); the training splits ``forget`` / ``retain`` / ``full`` are never cut,
        so the prepared target and retain-only models do not depend on it. Every row of
        every file is checked, also past ``limit``.
        """
        check_limit(limit)
        src = self.source(data_dir)

        where = src.where
        forget = qa_items(src.records(self.forget_split), self.forget_split,
                          where(self.forget_split))
        retain = qa_items(src.records(self.reference_key), self.reference_key,
                          where(self.reference_key))
        full = qa_items(src.records("full"), "full", where("full"))
        configs = {
            "forget": f"{self.forget_split}_perturbed",
            "retain": "retain_perturbed",
            "real_authors": "real_authors_perturbed",
            "world_facts": "world_facts_perturbed",
        }
        rows = {name: src.records(cfg) for name, cfg in configs.items()}
        eval_sets = tofu_eval_sets(
            rows, {name: where(cfg) for name, cfg in configs.items()},
            max_new_tokens=self.max_new_tokens, limit=limit,
            sources={name: src.key(cfg) for name, cfg in configs.items()},
        )
        holdout = qa_items(src.records(self.holdout_split), self.holdout_split,
                           where(self.holdout_split), limit)
        refusals = src.lines(REFUSALS_FILE, hub_file=IDK_HUB_FILE)
        # the tiny alias's general knowledge: every real-authors / world-facts row, never cut
        # by --limit (else the tiny base, and the models prepared from it, depend on it)
        pretrain = [it for name in ("real_authors", "world_facts")
                    for it in qa_items(rows[name], f"pretrain/{name}", where(configs[name]))]
        return self.extend(TaskData(
            forget=forget,
            retain=retain,
            full=full,
            eval_sets=eval_sets,
            pretrain=pretrain,
            files=dict(src.files),
            extras={"refusals": refusals, "holdout": holdout},
            source=src.source,
            derived=tofu_derived(),
        ))


@TASKS.register("tofu-forget01")
class TofuForget01(TofuTask):
    name = "tofu-forget01"
    description = "TOFU: forget 1% of 200 fictitious authors (40 QA; reference retain99)"
    forget_split = "forget01"
    holdout_split = "holdout01"
    sizes = ("train: forget 40, retain 3960, full 4000; eval: forget 40, retain 400, "
             "real_authors 100, world_facts 117; holdout 40")
    reference_key = "retain99"


@TASKS.register("tofu-forget05")
class TofuForget05(TofuTask):
    name = "tofu-forget05"
    description = "TOFU: forget 5% of 200 fictitious authors (200 QA; reference retain95)"
    forget_split = "forget05"
    holdout_split = "holdout05"
    sizes = ("train: forget 200, retain 3800, full 4000; eval: forget 200, retain 400, "
             "real_authors 100, world_facts 117; holdout 200")
    reference_key = "retain95"


@TASKS.register("tofu-forget10")
class TofuForget10(TofuTask):
    name = "tofu-forget10"
    description = "TOFU: forget 10% of 200 fictitious authors (400 QA; reference retain90)"
    forget_split = "forget10"
    holdout_split = "holdout10"
    sizes = ("train: forget 400, retain 3600, full 4000; eval: forget 400, retain 400, "
             "real_authors 100, world_facts 117; holdout 400")
    reference_key = "retain90"
