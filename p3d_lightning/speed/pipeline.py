"""Input-pipeline speed: clips/s of decode + sample + transform + collate, and the workers needed.

The other half of a training step: whether the data loader can feed the network at the rate
:mod:`~p3d_lightning.speed.training` measured. No model runs here.
"""
from __future__ import annotations

import math
import os
import time
from typing import Any, Dict, Optional, Sequence

__all__ = ["measure_data_pipeline", "workers_needed"]


def measure_data_pipeline(root: str | os.PathLike, *, num_workers: int = 0, batch_size: int = 8,
                          num_batches: int = 10, clip_len: int = 16, crop_size: int = 160,
                          dataset: str = "synthetic", num_classes: Optional[int] = None,
                          stage: str = "train", warmup_batches: int = 1,
                          **datamodule_kwargs: Any) -> Dict[str, Any]:
    """Clips/s of the whole input pipeline (decode + sample + transform + collate).

    Builds ``p3d_lightning.data.VideoDataModule`` (``dataset='synthetic'`` generates its
    videos under ``root`` on first use), iterates ``num_batches`` batches of the ``stage``
    loader after ``warmup_batches`` (worker start-up excluded) and times them. No model runs.
    """
    from p3d_lightning.data import VideoDataModule

    if num_classes is None:
        if dataset != "synthetic":
            raise ValueError(f"measure_data_pipeline: num_classes is required for dataset={dataset!r}")
        num_classes = 2 * int(datamodule_kwargs.get("synthetic_num_pairs", 4))
    datamodule_kwargs.setdefault("progress", False)
    if dataset == "synthetic":
        datamodule_kwargs.setdefault("synthetic_generate", True)  # the benchmark writes its own set
    kwargs = dict(dataset=dataset, root=str(root), num_classes=num_classes, clip_len=clip_len,
                  crop_size=crop_size, batch_size=batch_size, num_workers=num_workers)
    kwargs.update(datamodule_kwargs)
    dm = VideoDataModule(**kwargs)
    dm.prepare_data()
    dm.setup("fit" if stage == "train" else stage)
    loader = {"train": dm.train_dataloader, "val": dm.val_dataloader,
              "test": dm.test_dataloader}[stage]()
    it = iter(loader)

    def next_batch():
        nonlocal it
        try:
            return next(it)
        except StopIteration:  # small dataset: start another epoch
            it = iter(loader)
            return next(it)

    batch = None
    for _ in range(warmup_batches):  # worker start-up and first decode excluded
        batch = next_batch()
    n_clips = 0
    t0 = time.perf_counter()
    for _ in range(num_batches):
        batch = next_batch()
        n_clips += int(batch["clip"].shape[0])
    elapsed = time.perf_counter() - t0
    del it
    shape = list(batch["clip"].shape[1:])
    return {"num_workers": num_workers, "batch_size": batch_size, "clips": n_clips,
            "seconds": elapsed, "clips_per_s": n_clips / elapsed if elapsed > 0 else float("nan"),
            "clip_shape": shape, "dataset": dataset, "stage": stage}


def workers_needed(model_clips_per_s: float, pipeline: Sequence[Dict[str, Any]]) -> Optional[int]:
    """Fewest workers whose measured pipeline rate reaches ``model_clips_per_s``.

    If no measured worker count suffices, extrapolate linearly from the best per-worker rate
    (an estimate: needs that many free cores). None if nothing was measured.
    """
    rows = sorted((r for r in pipeline if r.get("clips_per_s")), key=lambda r: r["num_workers"])
    for r in rows:
        if r["clips_per_s"] >= model_clips_per_s:
            return int(r["num_workers"])
    per_worker = [r["clips_per_s"] / max(r["num_workers"], 1) for r in rows]
    if not per_worker:
        return None
    return int(math.ceil(model_clips_per_s / max(per_worker)))
