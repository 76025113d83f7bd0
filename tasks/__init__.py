"""Task definitions, installed as ``bench.tasks``; importing this package registers them.

Each module registers its tasks in :data:`bench.registry.TASKS`: ``tofu`` (TOFU
forget01/05/10), ``synthetic`` (the embedded offline default), ``muse`` (MUSE-News and its
sustainability steps) and ``semeval`` (SemEval-2025 Task 4 subtasks 1-3 and all three).
"""

from . import muse, semeval, synthetic, tofu  # noqa: F401  (registers the tasks)
