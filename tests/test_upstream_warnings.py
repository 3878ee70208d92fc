"""The entry points' filter of known upstream noise hides those messages only, never the project's."""

import logging
import warnings

import pytest

from p3d_lightning.upstream_warnings import KNOWN_WARNINGS, filter_upstream_warnings

UPSTREAM = [
    ("`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) and "
     "treespec.is_leaf()` instead.", FutureWarning),
    ("Precision bf16-mixed is not supported by the model summary.  Estimated model size in MB will not be "
     "accurate. Using 32 bits instead.", UserWarning),
    ("The number of training batches (3) is smaller than the logging interval Trainer(log_every_n_steps=50). "
     "Set a lower value for log_every_n_steps if you want to see logs for the training epoch.", UserWarning),
    ("LightningCLI's args parameter is intended to run from within Python like if it were from the command line.",
     UserWarning),
]


def _shown(message, category):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        filter_upstream_warnings()
        warnings.warn(message, category)
    return [str(w.message) for w in caught]


@pytest.mark.parametrize("message,category", UPSTREAM)
def test_known_upstream_warnings_are_hidden(message, category):
    assert _shown(message, category) == []


def test_project_warnings_and_others_are_shown():
    from p3d_lightning.data.dataset import BadVideoWarning

    ours = [
        ("FeatureWriter: 3 clips failed to decode and were left out", BadVideoWarning),
        ("checkpoint.save_last is ignored: last.ckpt is written by last_checkpoint", UserWarning),
        ("Precision bf16 requested but this CPU has no AVX512_BF16", UserWarning),
        # the same words not at the start of the message: someone else's warning
        ("our note: The number of training batches (3) is smaller than the logging interval", UserWarning),
    ]
    for message, category in ours:
        assert _shown(message, category) == [message]
    assert len(KNOWN_WARNINGS) == len(UPSTREAM)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_lightning_ads_dropped_other_info_kept():
    import lightning_utilities.core.rank_zero as rank_zero_module
    from pytorch_lightning.utilities.rank_zero import rank_zero_info

    filter_upstream_warnings()
    filter_upstream_warnings()  # idempotent: one filter per logger
    logger = rank_zero_module.log  # the logger rank_zero_info writes to (set by the last Lightning import)
    assert sum(type(f).__name__ == "_DropKnownLines" for f in logger.filters) == 1
    records, level = _Records(), logger.level
    logger.addHandler(records)  # on the logger itself: independent of propagation to pytest's handler
    logger.setLevel(logging.INFO)
    try:
        rank_zero_info("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]")
        rank_zero_info("💡 Tip: For seamless cloud uploads and versioning, try installing [litmodels]")
        rank_zero_info("The following callbacks returned in `LightningModule.configure_callbacks` will override "
                       "existing callbacks passed to Trainer: TQDMProgressBar")
        rank_zero_info("The following callbacks returned in `LightningModule.configure_callbacks` will override "
                       "existing callbacks passed to Trainer: ModelCheckpoint")
        rank_zero_info("GPU available: False, used: False")
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
    assert records.messages == [
        "The following callbacks returned in `LightningModule.configure_callbacks` will override "
        "existing callbacks passed to Trainer: ModelCheckpoint",
        "GPU available: False, used: False",
    ]
