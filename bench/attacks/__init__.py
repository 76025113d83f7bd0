"""Robustness attacks (installed as ``bench.attacks``): does the forgotten knowledge come back?

Every module here registers its attacks with ``@ATTACKS.register(name)`` on import; this
package imports all of its modules (those not starting with ``_``), so a new attack is one
new file. The contract, the option handling and the before/after comparison are in
:mod:`bench.attacks.base`; the run stage that applies them is
:func:`bench.run.attack_step`.
"""

from __future__ import annotations

import importlib
import pkgutil

from bench.attacks.base import Attack, AttackContext, PlannedAttack, compare, plan_attacks

__all__ = ["Attack", "AttackContext", "PlannedAttack", "compare", "plan_attacks"]

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_") and _info.name != "base":
        importlib.import_module(f"{__name__}.{_info.name}")
