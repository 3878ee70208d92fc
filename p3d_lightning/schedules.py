"""Learning-rate schedules of :class:`~p3d_lightning.module.P3DClassifier`, per optimiser step."""

from __future__ import annotations

import math

__all__ = ["StepLR"]


class StepLR:
    """Learning-rate multiplier per optimiser step: linear warm-up, then step/cosine/constant.

    A callable object (not a closure) so ``LambdaLR.state_dict()`` stores it and a resumed run
    continues the same schedule.
    """

    def __init__(self, schedule: str, step_size: int, gamma: float, warmup_steps: int, total_steps: int,
                 min_lr_ratio: float = 0.0) -> None:
        self.schedule = schedule
        self.step_size = max(1, int(step_size))
        self.gamma = float(gamma)
        self.warmup_steps = max(0, int(warmup_steps))
        self.total_steps = max(1, int(total_steps))
        self.min_lr_ratio = float(min_lr_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.schedule == "step":
            return self.gamma ** (step // self.step_size)
        if self.schedule == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            progress = min(1.0, (step - self.warmup_steps) / span)
            return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0
