"""The paper's Table 1 ablation: the same data, seed and schedule for every architecture, one table.

================  ==================================================================
module            what it holds
================  ==================================================================
``config``        the ablation YAML as :class:`AblationConfig` (with its ``SpeedConfig``)
``results``       ``results.csv``: schema, atomic numeric read/write, clip-shape parsing
``table``         the Markdown table and the accuracy-vs-speed figure
``curves``        training curves (loss, val accuracy, lr) from the runs' CSV logs
``figures``       what the figures share: one colour and name per method, PNG writing
``progress``      model k of N, elapsed, ETA from measured rates
``seeds``         across seeds: mean, std, 95% intervals, paired comparisons
``clip_length``   accuracy and clips/s against frames per clip
``runner``        :func:`run_ablation`: instantiate, fit, test, measure, collect
================  ==================================================================

``p3d-ablation`` (:mod:`p3d_lightning.commands.ablation`) is the command; ``docs/ablation.md``
the guide.
"""
from p3d_lightning.ablation.config import (DEFAULT_CONFIG, QUICK_OVERRIDES, AblationConfig, AblationError,
                                           load_ablation_config, quick_config)
from p3d_lightning.ablation.results import (RESULT_FIELDS, format_shape, is_frame_model, parse_shape, read_results,
                                            to_float, write_results)
from p3d_lightning.ablation.runner import run_ablation
from p3d_lightning.ablation.curves import training_curves_figure, write_training_curves
from p3d_lightning.ablation.table import accuracy_vs_speed_figure, plot_accuracy_vs_speed, write_markdown_table

__all__ = [
    "AblationConfig", "AblationError", "DEFAULT_CONFIG", "QUICK_OVERRIDES", "load_ablation_config",
    "quick_config", "RESULT_FIELDS", "format_shape", "is_frame_model", "parse_shape", "read_results",
    "to_float", "write_results", "run_ablation", "accuracy_vs_speed_figure", "plot_accuracy_vs_speed",
    "write_markdown_table", "training_curves_figure", "write_training_curves",
]
