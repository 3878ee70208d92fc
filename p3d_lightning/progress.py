"""Progress shown during training: Lightning's bar with the global step of ``max_steps``."""

from __future__ import annotations

from typing import Any, Dict, Union

from pytorch_lightning.callbacks import TQDMProgressBar

__all__ = ["StepProgressBar"]


class StepProgressBar(TQDMProgressBar):
    """:class:`TQDMProgressBar` whose metrics start with ``step: <global step>/<max_steps>``.

    The bar counts batches of the current epoch; runs scheduled in optimiser steps (every config
    of this project) want to see how far the schedule is. Put in place of the default bar by
    :meth:`P3DClassifier.configure_callbacks`.
    """

    def get_metrics(self, trainer: Any, pl_module: Any) -> Dict[str, Union[int, str, float, Dict[str, float]]]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)  # the run folder already says which version this is
        if trainer.max_steps and trainer.max_steps > 0:
            return {"step": f"{trainer.global_step}/{trainer.max_steps}", **metrics}
        return metrics
