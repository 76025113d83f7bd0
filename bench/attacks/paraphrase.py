"""Prompt attack for TOFU-shaped tasks: ask the paraphrased question instead of the original.

An item's paraphrase is ``item.meta["paraphrased_question"]`` (TOFU's and the synthetic
task's perturbed rows carry one). Items without one keep their question (counted in the
attack's info); a run whose re-evaluated sets hold no paraphrased question at all is a
one-line error at plan time. Only the question changes: ids, answers, paraphrased and
perturbed answers, metrics and formats are the original ones, so every metric (probability,
ROUGE-L, truth ratio, ...) is asked under the paraphrased question.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bench.attacks.base import Attack, AttackContext
from bench.errors import BenchError
from bench.items import EvalSet
from bench.registry import ATTACKS

FIELD = "paraphrased_question"


def _para(it: Any) -> str | None:
    v = (it.meta or {}).get(FIELD)
    return v if isinstance(v, str) and v.strip() else None


@ATTACKS.register("paraphrase")
class Paraphrase(Attack):
    """Ask the paraphrased question (item.meta["paraphrased_question"]) where the data has one"""

    name = "paraphrase"
    description = "prompt attack: ask the paraphrased question where the data has one (TOFU-shaped tasks)"
    kind = "prompt"

    def check(self, data: Any, eval_sets: Any) -> None:
        if not any(_para(it) for es in eval_sets for it in es.items):
            names = ", ".join(es.name for es in eval_sets)
            raise BenchError(f"attack 'paraphrase': no item of the re-evaluated sets ({names}) has a "
                             f"'{FIELD}' (a TOFU-shaped task's perturbed rows do)")

    def transform(self, es: EvalSet, ctx: AttackContext) -> EvalSet:
        items, n = [], 0
        for it in es.items:
            p = _para(it)
            if p is not None and es.format != "document":
                items.append(dataclasses.replace(it, question=p))
                n += 1
            else:
                items.append(it)
        self.info.setdefault("paraphrased", {})[es.name] = {"items": len(items), "paraphrased": n}
        return dataclasses.replace(es, items=items)
