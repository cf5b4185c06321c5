"""Learning-rate schedules that torch lacks, and the completion of a
configured scheduler with the run's length.

Configs give schedulers as partials (``_partial_: true``); the length of the
run is only known once the trainer has seen the data, so ``complete``
fills in ``total_steps`` / ``T_max`` when the config left them out.
"""

from __future__ import annotations

import functools
import inspect
import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler


def warmup_cosine(optimizer: Optimizer, total_steps: int, warmup_fraction: float = 0.05,
                  final_factor: float = 0.0) -> LambdaLR:
    """Linear warm-up from 0 over ``warmup_fraction`` of the run, then cosine
    decay to ``final_factor`` times the base lr (Goyal et al. 2017 warm-up;
    Loshchilov & Hutter 2017 cosine)."""
    warmup = max(1, round(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return final_factor + (1 - final_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def complete(factory: functools.partial, optimizer: Optimizer, total_steps: int) -> LRScheduler:
    """Build the scheduler, filling its run length from ``total_steps`` when
    the config did not set it (``total_steps`` or ``T_max``)."""
    parameters = inspect.signature(factory.func).parameters
    extra = {}
    for key in ("total_steps", "T_max"):
        if key in parameters and factory.keywords.get(key) is None:
            extra[key] = total_steps
    return factory(optimizer, **extra)


def warmup_multistep(optimizer: Optimizer, milestones: list[int], gamma: float = 0.1,
                     warmup_steps: int = 0, warmup_factor: float = 0.1) -> LambdaLR:
    """The CIFAR ResNet schedule of He et al. 2015, section 4.2, counted in
    iterations: the lr is multiplied by ``gamma`` at each milestone; for the
    first ``warmup_steps`` iterations it is ``warmup_factor`` times the base
    lr (their ResNet-110: 0.01 for 400 iterations, then back to 0.1)."""
    ordered = sorted(milestones)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return warmup_factor
        return gamma ** sum(step >= milestone for milestone in ordered)

    return LambdaLR(optimizer, factor)
