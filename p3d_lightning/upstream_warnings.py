"""Known-harmless warnings and advertisements of the libraries under us, filtered by message.

Every console script calls :func:`filter_upstream_warnings` first (``commands/<name>.py``), so a
run prints what concerns the run. The library itself filters nothing: code that imports it
(a notebook, a test) sees every warning. Each entry is matched by the start of its message, so
any other warning, the project's own (``BadVideoWarning``, the ``FeatureWriter`` and checkpoint
warnings) included, is shown as before. Imports nothing heavy: commands that do not need
Lightning still start fast.
"""
from __future__ import annotations

import logging
import re
import warnings
from typing import Tuple, Type

__all__ = ["KNOWN_LOG_LINES", "KNOWN_WARNINGS", "filter_upstream_warnings"]

#: ``(start of the message as a regex, category, why it is harmless here)``.
KNOWN_WARNINGS: Tuple[Tuple[str, Type[Warning], str], ...] = (
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning,
     "Lightning 2.6's _pytree checks torch's deprecated LeafSpec; nothing a user can change"),
    (r"Precision \S+ is not supported by the model summary", UserWarning,
     "only the summary's size estimate; the ablation's size_mb comes from models/complexity.py"),
    (r"The number of training batches \(\d+\) is smaller than the logging interval", UserWarning,
     "step schedules: Lightning logs every log_every_n_steps global steps, across epochs"),
    (r"LightningCLI's args parameter is intended to run from within Python", UserWarning,
     "main(args) of every command is meant to be called from Python with its own arguments"),
)

#: Lightning's info lines (``logging``, not ``warnings``) that are advertisements, or say what
#: the project does on purpose (its step-of-max_steps bar replaces Lightning's).
KNOWN_LOG_LINES: Tuple[str, ...] = (
    r"💡 Tip: For seamless cloud",  # litlogger / litmodels ads, once per Trainer
    r"The following callbacks returned in `LightningModule.configure_callbacks` will override "
    r"existing callbacks passed to Trainer: TQDMProgressBar$",
)

# rank_zero_info logs through whichever of these the last imported Lightning module set
_LIGHTNING_LOGGERS = (
    "lightning_utilities.core.rank_zero",
    "lightning_fabric.utilities.rank_zero",
    "pytorch_lightning.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning.pytorch.utilities.rank_zero",
)


class _DropKnownLines(logging.Filter):
    """Drops the log records whose message starts like one of :data:`KNOWN_LOG_LINES`."""

    patterns = [re.compile(p) for p in KNOWN_LOG_LINES]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(p.match(message) for p in self.patterns)


def filter_upstream_warnings() -> None:
    """Hide :data:`KNOWN_WARNINGS` and :data:`KNOWN_LOG_LINES` in this process (idempotent)."""
    for message, category, _why in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name in _LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnownLines) for f in logger.filters):
            logger.addFilter(_DropKnownLines())
