"""crabnet's pieces (model, optimisers, loss), imported without its import-time global seeding.

``crabnet.kingcrab``, ``crabnet.utils.utils`` and ``crabnet.utils.optim`` each run
``torch.manual_seed(42)`` and ``np.random.seed(42)`` when imported; we restore both states.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

_numpy_state = np.random.get_state()
with torch.random.fork_rng(devices=[]):
    from crabnet.kingcrab import SubCrab
    from crabnet.utils.optim import SWA
    from crabnet.utils.utils import Lamb, Lookahead, RobustL1
np.random.set_state(_numpy_state)
del _numpy_state



def with_hook_state(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Give crabnet's wrapper optimisers the hook tables torch's ``step`` wrapper reads.

    ``Lookahead`` and ``SWA`` skip ``Optimizer.__init__``; once any instance calls ``zero_grad``,
    torch wraps the class's ``step`` with a profiler hook that needs these tables.
    """
    for name in ("_optimizer_step_pre_hooks", "_optimizer_step_post_hooks"):
        optimizer.__dict__.setdefault(name, OrderedDict())
    return optimizer


__all__ = ["SWA", "Lamb", "Lookahead", "RobustL1", "SubCrab", "with_hook_state"]
