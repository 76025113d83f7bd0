"""Unlearning method adapters (installed as ``bench.methods``).

Every module here registers its methods with ``@METHODS.register(name, description)`` on
import; this package imports all of its modules (those not starting with ``_``), so a new
method is one new file. ``none`` evaluates the model as it is.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence

from bench.items import Item
from bench.model_bundle import ModelBundle
from bench.registry import METHODS


@METHODS.register("none", "No unlearning: evaluate the model as it is")
def unlearn_none(model: ModelBundle, forget: Sequence[Item], retain: Sequence[Item]) -> ModelBundle:
    """Return ``model`` unchanged (the baseline / reference-model evaluation)."""
    return model


for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
