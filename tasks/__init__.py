"""Task definitions, installed as ``bench.tasks``; importing this package registers them.

Each module registers its tasks in :data:`bench.registry.TASKS`: ``tofu`` (TOFU
forget01/05/10), ``closer_look`` (continual TOFU, real world), ``rwku`` and
``synthetic`` (the embedded offline default).
"""

from . import closer_look, rwku, synthetic, tofu  # noqa: F401  (registers the tasks)
