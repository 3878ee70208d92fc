"""Does the fast path compute what fp32 computes? Top-1 agreement and logit differences on real clips.

The speed columns time :func:`~p3d_lightning.models.fastpath.optimize_for_inference`'s copy
(BN folded, channels_last_3d, bf16 where native, fused convs); these checks say what that costs
in numbers: on the test clips of any loader (:func:`compare_fast_path`) or of a trained
checkpoint and its experiment YAML (:func:`check_fast_path_on_data`, ``p3d-bench --check``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional

import torch
from torch import nn

from p3d_lightning.speed.environment import device_name
from p3d_lightning.speed.inference import inference_model

__all__ = ["check_fast_path_on_data", "compare_fast_path"]


def compare_fast_path(model: nn.Module, loader: Iterable[Dict[str, Any]], *,
                      device: str | torch.device = "cpu", max_batches: Optional[int] = None,
                      fast_kwargs: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """``model`` as plain fp32 NCDHW against its :func:`optimize_for_inference` copy, on the
    dict batches of ``loader`` (clips with ``valid`` False, i.e. failed to decode, skipped).

    Returns :func:`~p3d_lightning.models.fastpath.compare_outputs`' keys (``num_clips``,
    ``top1_agreement``, ``max_abs_diff``, ``max_rel_diff``, ``within_bf16_tol`` ...) with the
    accuracies as ``clip_acc_fp32`` / ``clip_acc_fast``, plus the fast path's ``precision``
    and ``fused_ops``. The caller's model is not modified.
    """
    from p3d_lightning.models.fastpath import compare_outputs, optimize_for_inference

    device = torch.device(device)
    plain = inference_model(model, "fp32", device)
    fast = optimize_for_inference(plain, device=device, **(fast_kwargs or {}))

    def batches():
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                return
            keep = batch["valid"].bool() if "valid" in batch else torch.ones(len(batch["label"]), dtype=torch.bool)
            if keep.any():
                yield batch["clip"][keep].to(device), batch["label"][keep]

    res = compare_outputs(plain, fast, batches())
    res["clip_acc_fp32"] = res.pop("acc_reference")
    res["clip_acc_fast"] = res.pop("acc_candidate")
    res.update(precision=fast.precision, fused_ops=fast.fused_ops)
    return res


@torch.no_grad()
def check_fast_path_on_data(checkpoint: str | Path, config: str | Path, *, stage: str = "test",
                            overrides: Optional[Dict[str, Any]] = None,
                            max_batches: Optional[int] = None,
                            fast_kwargs: Optional[Dict[str, Any]] = None,
                            device: str | torch.device = "cpu",
                            log: Callable[[str], None] = print) -> Dict[str, Any]:
    """The fast path against the plain fp32 model of a trained checkpoint, on real clips.

    Loads the run with :func:`p3d_lightning.experiment.load_run` (the ``P3DClassifier`` in
    ``checkpoint``, read with ``weights_only=True``, and the data of the experiment YAML
    ``config``; ``overrides``: dotted keys, e.g. ``{"data.root": "/data/ucf101"}``), runs every
    clip of the ``stage`` loader (``"test"`` or ``"val"``) through :func:`compare_fast_path`
    (``fast_kwargs``), and returns its keys plus the checkpoint, config, stage, arch and device.
    """
    from p3d_lightning.experiment import load_run

    if stage not in ("test", "val"):
        raise ValueError(f"stage must be 'test' or 'val', got {stage!r}")
    module, datamodule = load_run(checkpoint, config, overrides)
    device = torch.device(device)
    datamodule.prepare_data()
    datamodule.setup("validate" if stage == "val" else "test")
    loader = datamodule.val_dataloader() if stage == "val" else datamodule.test_dataloader()
    try:
        cmp = compare_fast_path(module.model, loader, device=device, max_batches=max_batches,
                                fast_kwargs=fast_kwargs)
    except ValueError as err:  # compare_outputs: no clips
        raise ValueError(f"{config}: the {stage} loader gave no decodable clip") from err
    res = {"checkpoint": str(checkpoint), "config": str(config), "stage": stage,
           "arch": module.hparams.get("arch", ""), **cmp,
           "device": str(device), "device_name": device_name(device)}
    total, max_abs = res["num_clips"], res["max_abs_diff"]
    log(f"[p3d-bench] {checkpoint}: {total} {stage} clips, top-1 agreement "
        f"{100 * res['top1_agreement']:.2f}%, max |dlogit| {max_abs:.4f} "
        f"({100 * res['max_rel_diff']:.2f}% of max |logit|), clip acc fp32 "
        f"{100 * res['clip_acc_fp32']:.2f}% vs fast ({res['precision']}) {100 * res['clip_acc_fast']:.2f}%")
    return res
