"""Relearning attack: a few fine-tuning steps on a small slice of the forget data, then
evaluate again (Hu et al., ICLR 2025 "Unlearning or obfuscating?"; Fan et al. 2025,
"Towards LLM unlearning resilient to relearning attacks"): knowledge that was only
suppressed comes back after tens of steps, also on items the attacker never trained on.

Data (``data``): ``auto`` = the task's related relearning set when it names one
(``TaskData.extras["relearn"]``: items or a :class:`bench.items.Split`, e.g. RWKU's
passages), else the forget split; ``forget`` = the forget split; any other value = that
``TaskData.extras`` key. The slice is ``n_items`` items drawn by ``random.Random(seed)``.

Held out (``hold_out``, default): the attack is judged on items it did not train on. The
slice is drawn first from the items no re-evaluated set asks (by question, or text for
documents); when those are too few (in TOFU-shaped tasks the forget split *is* the
evaluated forget set), it takes the rest from the asked ones, at most half of them, and the
re-evaluated sets drop the items the slice covers; ``before`` and the target's values are
then re-aggregated on the same remaining items (:func:`bench.attacks.base.restrict`), so
before and after compare like with like. ``hold_out=false``: the slice is drawn from the
whole pool and every item is evaluated.

Training: :func:`bench.training.finetune` (answer-token NLL, AdamW, no warm-up, no weight
decay), ``lr`` 1e-5 (the relearning papers'; the ``tiny`` alias runs with its method lr
1e-3, like its methods), exactly ``steps`` optimizer steps: one step = one batch of the
whole slice (``batch_size=0``) or of ``batch_size`` items (then ``steps`` is reached with
the loop's ``max_steps`` where the training loop has it, else by whole epochs and the
actual count is recorded). Seeded (``seed``: the run's by default) and recorded (the
training log, the slice's item ids).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import random
from typing import Any

from bench.attacks.base import Attack, AttackContext
from bench.errors import BenchError
from bench.items import EvalSet, Item, Split, split_format
from bench.registry import ATTACKS


def _text(it: Item, fmt: str) -> str:
    return (it.answer if fmt == "document" else it.question).strip()


def _asked(eval_sets: Any) -> set[str]:
    out: set[str] = set()
    for es in eval_sets:
        for it in es.items:
            for text in (it.question, it.meta.get("paraphrased_question") if it.meta else None):
                if text:
                    out.add(text.strip())
            if es.format == "document" and it.answer:
                out.add(it.answer.strip())
    return out


@ATTACKS.register("relearn")
class Relearn(Attack):
    """A few fine-tuning steps on a held-out slice of the forget set (relearning attack)"""

    name = "relearn"
    description = "relearning attack: fine-tune a few steps on a held-out slice of the forget data"
    kind = "model"

    def __init__(self, steps: int = 10, lr: float = 1e-5, n_items: int = 16, batch_size: int = 0,
                 data: str = "auto", hold_out: bool = True, seed: int = 0, max_length: int = 512) -> None:
        super().__init__()
        if steps < 1 or n_items < 1 or batch_size < 0 or lr <= 0:
            raise ValueError(f"need steps >= 1, n_items >= 1, batch_size >= 0, lr > 0 "
                             f"(got {steps}, {n_items}, {batch_size}, {lr})")
        self.steps = steps
        self.lr = lr
        self.n_items = n_items
        self.batch_size = batch_size
        self.data = data
        self.hold_out = hold_out
        self.seed = seed
        self.max_length = max_length

    def source(self, data: Any) -> tuple[str, list[Item], str]:
        """``(source name, its items, split format)``."""
        source = ("relearn" if "relearn" in data.extras else "forget") if self.data == "auto" else self.data
        if source == "forget":
            items = data.forget
        elif source in data.extras and isinstance(data.extras[source], (list, tuple)):
            items = data.extras[source]
        else:
            keys = [k for k, v in data.extras.items() if isinstance(v, (list, tuple)) and not k.startswith("_")]
            raise BenchError(f"attack 'relearn': data={source!r} is not a split of this task "
                             f"(choose forget or one of: {', '.join(keys) or 'none'})")
        return source, [it for it in items if isinstance(it, Item)], split_format(items)

    def choose(self, data: Any, eval_sets: Any) -> tuple[str, list[Item], str, set[str]]:
        """``(source, slice, format, texts the slice covers)``: the relearning slice (see the
        module docstring); deterministic given ``seed``."""
        source, pool, fmt = self.source(data)
        rng = random.Random(self.seed)
        if not self.hold_out:
            picked = pool if len(pool) <= self.n_items else rng.sample(pool, self.n_items)
        else:
            asked = _asked(eval_sets)
            fresh = [it for it in pool if _text(it, fmt) not in asked]
            seen = [it for it in pool if _text(it, fmt) in asked]
            picked = fresh if len(fresh) <= self.n_items else rng.sample(fresh, self.n_items)
            more = min(self.n_items - len(picked), len(seen) // 2)
            if more > 0:
                picked = picked + rng.sample(seen, more)
        return source, picked, fmt, {_text(it, fmt) for it in picked}

    def check(self, data: Any, eval_sets: Any) -> None:
        source, picked, _, _ = self.choose(data, eval_sets)
        if not picked:
            raise BenchError(f"attack 'relearn': '{source}' holds no item to relearn on once the "
                             "evaluated items are held out (--attack-set relearn.hold_out=false "
                             "trains on evaluated items, relearn.data=KEY uses another split)")

    def transform(self, es: EvalSet, ctx: AttackContext) -> EvalSet:
        if not self.hold_out:
            return es
        covered = self._covered if hasattr(self, "_covered") else self.choose(ctx.data, ctx.eval_sets)[3]
        keep = [it for it in es.items if it.question.strip() not in covered
                and not (es.format == "document" and it.answer.strip() in covered)]
        if not keep:
            raise BenchError(f"attack 'relearn': the slice covers every item of set '{es.name}'; "
                             "lower relearn.n_items")
        self.info.setdefault("held_out", {})[es.name] = len(es.items) - len(keep)
        return dataclasses.replace(es, items=keep)

    def apply(self, bundle: Any, ctx: AttackContext) -> Any:
        from bench import training

        source, picked, fmt, self._covered = self.choose(ctx.data, ctx.eval_sets)
        items = Split(picked, format=fmt)
        bs = len(items) if self.batch_size == 0 else min(self.batch_size, len(items))
        per_epoch = math.ceil(len(items) / bs)
        epochs = math.ceil(self.steps / per_epoch)
        kwargs: dict[str, Any] = {}
        sig = inspect.signature(training.finetune).parameters
        exact = per_epoch == 1 or "max_steps" in sig or any(
            p.kind == p.VAR_KEYWORD for p in sig.values())
        if per_epoch > 1 and exact:
            kwargs["max_steps"] = self.steps
        ctx.log(f"attack relearn: {self.steps} steps at lr {self.lr} on {len(items)} items of "
                f"'{source}' (batch {bs}, seed {self.seed})")
        log = training.finetune(bundle, items, epochs=epochs, lr=self.lr, batch_size=bs,
                                max_length=self.max_length, seed=self.seed, desc="attack relearn",
                                **kwargs)
        self.info = {"source": source, "format": fmt, "items": len(items),
                     "item_ids": [it.id for it in items][:200], "batch_size": bs,
                     "optimizer_steps": len(log.losses), "exact_steps": exact,
                     "losses": [round(x, 6) for x in log.losses], "seconds": round(log.seconds, 3)}
        return bundle
