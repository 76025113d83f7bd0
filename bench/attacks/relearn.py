"""Relearning attack: a few fine-tuning steps on a small slice of the forget data, then
evaluate again (Hu et al., ICLR 2025 "Unlearning or obfuscating?"; Fan et al. 2025,
"Towards LLM unlearning resilient to relearning attacks"): knowledge that was only
suppressed comes back after tens of steps, also on items the attacker never trained on.

Data (``data``): ``auto`` = the task's related relearning set when it names one
(``TaskData.extras["relearn"]``: items or a :class:`bench.items.Split`, e.g. RWKU's
passages), else the forget split; ``forget`` = the forget split; any other value = that
``TaskData.extras`` key. With ``hold_out`` (default) every item whose question (or, for
documents, text) is asked by a re-evaluated set is removed first, so the attack is judged
on items it did not train on. The slice is ``n_items`` items drawn by
``random.Random(seed)`` from what is left (all of them when fewer remain).

Training: :func:`bench.training.finetune` (answer-token NLL, AdamW, no warm-up, no weight
decay), ``lr`` 1e-5 (the relearning papers'; the ``tiny`` alias runs with its method lr
1e-3, like its methods), exactly ``steps`` optimizer steps: one step = one batch of the
whole slice (``batch_size=0``) or of ``batch_size`` items (then ``steps`` is reached with
the loop's ``max_steps`` where the training loop has it, else by whole epochs and the
actual count is recorded). Seeded (``seed``: the run's by default) and recorded (the
training log, the slice's item ids).
"""

from __future__ import annotations

import inspect
import math
import random
from typing import Any

from bench.attacks.base import Attack, AttackContext
from bench.errors import BenchError
from bench.items import Item, Split, split_format
from bench.registry import ATTACKS


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

    def pool(self, data: Any, eval_sets: Any) -> tuple[str, list[Item], str]:
        """``(source name, candidate items, split format)`` after holding out the asked items."""
        if self.data == "auto":
            source = "relearn" if "relearn" in data.extras else "forget"
        else:
            source = self.data
        if source == "forget":
            items = data.forget
        elif source in data.extras and isinstance(data.extras[source], (list, tuple)):
            items = data.extras[source]
        else:
            keys = [k for k, v in data.extras.items() if isinstance(v, (list, tuple)) and not k.startswith("_")]
            raise BenchError(f"attack 'relearn': data={source!r} is not a split of this task "
                             f"(choose forget or one of: {', '.join(keys) or 'none'})")
        fmt = split_format(items)
        cand = [it for it in items if isinstance(it, Item)]
        if self.hold_out:
            asked = _asked(eval_sets)
            cand = [it for it in cand if it.question.strip() not in asked
                    and not (fmt == "document" and it.answer.strip() in asked)]
        return source, cand, fmt

    def check(self, data: Any, eval_sets: Any) -> None:
        source, cand, _ = self.pool(data, eval_sets)
        if not cand:
            raise BenchError(
                f"attack 'relearn': no item of '{source}' is left to relearn on once the evaluated "
                "items are held out; evaluate fewer (--limit N), relearn on another split "
                "(--attack-set relearn.data=KEY) or train on the evaluated items "
                "(--attack-set relearn.hold_out=false)")

    def apply(self, bundle: Any, ctx: AttackContext) -> Any:
        from bench import training

        source, cand, fmt = self.pool(ctx.data, ctx.eval_sets)
        picked = cand if len(cand) <= self.n_items else random.Random(self.seed).sample(cand, self.n_items)
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
        self.info = {"source": source, "format": fmt, "items": len(items), "pool": len(cand),
                     "item_ids": [it.id for it in items][:200], "batch_size": bs,
                     "optimizer_steps": len(log.losses), "exact_steps": exact,
                     "losses": [round(x, 6) for x in log.losses], "seconds": round(log.seconds, 3)}
        return bundle
