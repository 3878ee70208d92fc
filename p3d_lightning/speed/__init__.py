"""Speed: how fast a network runs here, measured one way for every tool.

========================  ===============================================================
module                    what it measures / holds
========================  ===============================================================
``environment``           device and CPU names, library versions, load, peak memory, malloc
``timing``                the one timing loop (warm-up, synchronised repeats, time budget)
``config``                ``SpeedConfig`` (the ablation's ``speed:``), ``SpeedResult``, ``ModelStats``
``inference``             clips/s of a setting (plain fp32 or a fast-path copy), paper-scale nets
``training``              clips/s of forward + backward + SGD step
``ceiling``               peak GFLOP/s of large GEMMs/convs; benchmark rows against it
``pipeline``              clips/s of decode + sample + transform; workers needed to keep up
``numerics``              the fast path against fp32 on real clips (top-1 agreement, logits)
``callbacks``             the Table 1 columns measured inside any Lightning run
========================  ===============================================================

``p3d-bench`` (:mod:`p3d_lightning.commands.bench`) drives them; ``docs/speed.md`` has numbers.
"""
from p3d_lightning.speed.ceiling import measure_ceiling
from p3d_lightning.speed.config import ModelStats, SpeedConfig, SpeedResult
from p3d_lightning.speed.environment import PeakMemory, device_name, environment_info, load_average
from p3d_lightning.speed.inference import inference_model, measure_inference_speed, paper_scale_speed
from p3d_lightning.speed.numerics import check_fast_path_on_data, compare_fast_path
from p3d_lightning.speed.pipeline import measure_data_pipeline, workers_needed
from p3d_lightning.speed.training import measure_training_speed

from p3d_lightning._lazy import lazy_exports

# the callbacks import Lightning: loaded on first use, so that the notebooks' helpers, the ablation's
# config and p3d-bench's library part start without it
_EXPORTS = dict.fromkeys(("InferenceSpeedCallback", "ModelStatsCallback", "TrainThroughputCallback",
                          "infer_clip_shape", "log_to_loggers"), "callbacks")
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, ("callbacks",))

__all__ = [
    "InferenceSpeedCallback", "ModelStatsCallback", "TrainThroughputCallback", "infer_clip_shape",
    "log_to_loggers", "measure_ceiling", "ModelStats", "SpeedConfig", "SpeedResult", "PeakMemory",
    "device_name", "environment_info", "load_average", "inference_model", "measure_inference_speed",
    "paper_scale_speed", "check_fast_path_on_data", "compare_fast_path", "measure_data_pipeline",
    "workers_needed", "measure_training_speed",
]
