"""The ablation's overall progress: model k of N, elapsed time and an ETA from measured rates.

One line when a model starts and one when it ends::

    [ablation] model 2/5 p3d_a: start, steps 0 -> 600; elapsed 0:04:10; ETA 0:16:40 (4 models, 2400 steps ...)
    [ablation] model 2/5 p3d_a: done in 0:04:05 (600 steps, 0.41 s/step); elapsed 0:08:15; ETA 0:12:20 (...)

The rate is measured, never guessed: the wall time of the models finished so far in this
process (training, test and speed measurement: all that a remaining model will also do) over
the steps they trained. Before the first model has finished the ETA is ``unknown``, and so it
is when a remaining run has no ``max_steps`` (an epoch-based schedule). The ETA is that rate
times the steps still to train: those of the starting (or later) models, less the steps a
resumed run's ``last.ckpt`` already holds.
"""
from __future__ import annotations

import os
import time
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

__all__ = ["AblationProgress", "checkpoint_step", "format_duration"]


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (``0:04:05``)."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def checkpoint_step(path: os.PathLike) -> int:
    """The global step a ``last.ckpt`` holds (0 when there is none). Memory-mapped: only the
    small ``global_step`` entry is read, not the weights."""
    if not os.path.isfile(path):
        return 0
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 (unreadable: the runner's own check reports it, naming the file)
        return 0
    return int(state.get("global_step", 0) or 0) if isinstance(state, dict) else 0


def _model_of(label: str) -> str:
    """``p3d_a/seed1`` -> ``p3d_a``: the seeds of a model share its rate."""
    return str(label).split("/")[0]


class AblationProgress:
    """Progress lines of one ablation.

    Args:
        models: every model of the ablation, in order (``k of N`` counts these; finished
            ones included, so a resumed ablation says ``model 3/5``).
        steps_left: for each model still to run, the training steps it has left (``None``:
            not known, e.g. no ``max_steps``). Models not in it are already finished.
        start_steps: for a resumed run, the step its ``last.ckpt`` holds (shown in its start line).
        started: when the ablation started, on ``clock`` (default: now); elapsed counts from it.
        clock: seconds (``time.monotonic``; tests pass a fake).
    """

    def __init__(self, models: Sequence[str], steps_left: Mapping[str, Optional[int]],
                 start_steps: Optional[Mapping[str, int]] = None, started: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.models = [str(m) for m in models]
        self.steps_left: Dict[str, Optional[int]] = dict(steps_left)
        self.start_steps = dict(start_steps or {})
        self.clock = clock
        self.t0 = clock() if started is None else started
        self._started: Dict[str, float] = {}
        self._seconds = 0.0  # wall time of the models finished in this process
        self._steps = 0  # and the steps they trained
        self._rates: Dict[str, Tuple[float, int]] = {}  # per model (a label's part before "/"): seconds, steps

    def _position(self, name: str) -> str:
        k = self.models.index(name) + 1 if name in self.models else len(self.models)
        return f"model {k}/{len(self.models)} {name}"

    @property
    def seconds_per_step(self) -> Optional[float]:
        """The measured rate, ``None`` before a model has finished."""
        return self._seconds / self._steps if self._steps else None

    def eta(self) -> str:
        """The remaining models' time at the measured rate, in words."""
        if not self.steps_left:
            return "ETA 0:00:00 (all models done)"
        rate = self.seconds_per_step
        if rate is None:
            return "ETA unknown (measured after the first model)"
        left = list(self.steps_left.values())
        if any(s is None for s in left):
            return "ETA unknown (a remaining run has no max_steps)"
        steps = sum(left)
        seconds = 0.0
        for name, n in self.steps_left.items():  # a model's own rate once one of its seeds finished
            own = self._rates.get(_model_of(name))
            seconds += (own[0] / own[1] if own else rate) * n
        return (f"ETA {format_duration(seconds)} ({len(left)} model{'s' if len(left) != 1 else ''}, "
                f"{steps} steps at {rate:.3g} s/step)")

    def _elapsed(self) -> str:
        return f"elapsed {format_duration(self.clock() - self.t0)}"

    def start(self, name: str) -> str:
        """The line for ``name`` starting (call before its fit)."""
        self._started[name] = self.clock()
        first = self.start_steps.get(name, 0)
        left = self.steps_left.get(name)
        steps = f"steps {first} -> {first + left}" if left is not None else f"from step {first}"
        return f"[ablation] {self._position(name)}: start, {steps}; {self._elapsed()}; {self.eta()}"

    def finish(self, name: str, steps_trained: Optional[int] = None) -> str:
        """The line for ``name`` finished; ``steps_trained`` in this process (default: all it had left)."""
        seconds = self.clock() - self._started.get(name, self.t0)
        steps = self.steps_left.pop(name, None) if steps_trained is None else int(steps_trained)
        self.steps_left.pop(name, None)
        done = f"done in {format_duration(seconds)}"
        if steps:
            self._seconds += seconds
            self._steps += steps
            before = self._rates.get(_model_of(name), (0.0, 0))
            self._rates[_model_of(name)] = (before[0] + seconds, before[1] + steps)
            done += f" ({steps} steps, {seconds / steps:.3g} s/step)"
        return f"[ablation] {self._position(name)}: {done}; {self._elapsed()}; {self.eta()}"
