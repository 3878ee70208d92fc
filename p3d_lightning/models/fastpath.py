"""Inference fast path: BatchNorm folding, ``channels_last_3d``, bf16/fp16 weights, torch.compile.

One switch, :func:`optimize_for_inference`, turns a trained network into a faster
eval-only copy that still takes the ordinary fp32 ``(N, C, T, H, W)`` clip and returns
fp32 outputs::

    fast = optimize_for_inference(model)            # bf16 + folded BN + channels_last_3d
    logits = fast(clip)                             # fp32 logits
    feats = fast.forward_features(clip)             # fp32 pool5 features

What it does, in order, on a deep copy (the caller's model is never touched):

1. ``eval()``; every BatchNorm that directly follows a convolution is folded into that
   convolution (``w' = w * g / sqrt(v + eps)``, ``b' = (b - m) * g / sqrt(v + eps) + beta``)
   and replaced by ``nn.Identity``. The conv -> BN pairs are found with a ``torch.fx``
   trace of ``forward`` (a pair is folded only if the conv's output feeds nothing but the
   BN and each module is called once); if the model cannot be traced, a module-pair pass
   (``convX``/``bnX`` siblings, ``(conv, bn)`` neighbours in a ``Sequential``) is used.
   The model's own class is kept, so ``forward_features``/``forward_head`` still work.
2. ``channels_last_3d`` (``channels_last`` for 4-D weights) memory format for weights and
   input; oneDNN runs convolutions much faster in that layout.
3. Weights cast to the compute dtype: ``'auto'`` picks bf16 on a CPU with native bf16
   (AVX512_BF16 or AMX) or a GPU that supports it, fp16 on an older GPU, fp32 otherwise.
4. On the CPU (eager): conv -> ReLU and conv -> residual add -> ReLU chains become single
   oneDNN calls with post-ops, constant multiplies are folded into the conv weights and the
   (2,1,1) temporal max pools become strided maxima (:mod:`p3d_lightning.models.fusion`;
   P3D-50 bf16 batch 8 on a 2-core CPU: ~35 -> ~42 clips/s).
5. Optionally ``torch.compile`` (instead of step 4: inductor does its own fusion).

Numerics (checked by ``tests/test_fastpath.py`` and :func:`compare_outputs`): fp32 with
folded BN matches the plain model to ~1e-5 relative; bf16 weights carry ~8 significant
bits, so logits differ by up to a few percent of the logit range (we document
``max|dlogit| <= 0.05 * max|logit| + 0.05``) while the top-1 class agrees on >= 99% of clips
for a trained network.
"""
from __future__ import annotations

import copy
import logging
from typing import Dict, Iterable, Optional, Tuple

import torch
from torch import nn

from p3d_lightning.precision import bf16_supported, dtype_name
from p3d_lightning.precision import resolve_inference_dtype as resolve_dtype

from .folding import find_conv_bn_pairs, fold_batchnorm

log = logging.getLogger(__name__)


def cpu_supports_bf16() -> bool:
    """True if bf16 runs natively on this CPU (probed once by :mod:`p3d_lightning.precision`)."""
    return bf16_supported("cpu")


# Documented tolerance of the bf16 path against plain fp32 (see module docstring).
BF16_LOGIT_RTOL = 0.05
BF16_LOGIT_ATOL = 0.05


# --------------------------------------------------------------------------------------
# The wrapped fast model
# --------------------------------------------------------------------------------------
def _to_memory_format(module: nn.Module, channels_last: bool) -> nn.Module:
    if not channels_last:
        return module
    # channels_last_3d acts on 5-D parameters only; 4-D (2-D convs) get channels_last.
    module.to(memory_format=torch.channels_last_3d)
    for p in module.parameters():
        if p.dim() == 4:
            p.data = p.data.contiguous(memory_format=torch.channels_last)
    return module


class InferenceModel(nn.Module):
    """Eval-only wrapper produced by :func:`optimize_for_inference`.

    Takes the ordinary fp32 input (any layout), converts it to the compute dtype and memory
    format (a new tensor; the caller's input is never modified), runs the optimised network
    and returns fp32 outputs. Exposes ``forward``, ``forward_features`` and ``forward_head``
    when the wrapped network has them; other attributes (``num_features``, ``fc`` ...) are
    looked up on the wrapped network. On the CPU ``forward`` and ``forward_features`` run the
    fused graphs in ``fused`` (see :mod:`p3d_lightning.models.fusion`; ``fused_ops`` counts
    what was fused), which share the wrapped network's weights.
    """

    def __init__(self, net: nn.Module, dtype: torch.dtype, channels_last: bool,
                 autocast: bool = False, compiled: Optional[nn.Module] = None,
                 folded_bn: int = 0, fused: Optional[Dict[str, nn.Module]] = None):
        super().__init__()
        self.net = net
        self.compute_dtype = dtype
        self.channels_last = channels_last
        self.autocast = autocast
        self.folded_bn = folded_bn
        # "<method>_graph" -> fused torch.fx graph sharing ``net``'s parameters (fusion.py)
        self.fused = nn.ModuleDict({f"{k}_graph": v for k, v in (fused or {}).items()})
        # compiled forward shares parameters with ``net``; not registered as a child
        self.__dict__["_compiled"] = compiled

    @property
    def precision(self) -> str:
        """Human-readable precision, e.g. 'bf16', 'bf16-autocast', 'fp32'."""
        name = dtype_name(self.compute_dtype)
        return f"{name}-autocast" if self.autocast else name

    @property
    def fused_ops(self) -> Dict[str, int]:
        """Counts of fused calls in the ``forward`` graph (empty when not fused)."""
        gm = self._fused_graph("forward")
        if gm is None:
            return {}
        from .fusion import count_fused
        return count_fused(gm)

    def _fused_graph(self, method: str) -> Optional[nn.Module]:
        key = f"{method}_graph"
        return self.fused[key] if key in self.fused else None

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        dtype = torch.float32 if self.autocast else self.compute_dtype
        # Cast first, then change the layout: on the CPU a cast followed by a bf16 permute is
        # ~2x faster than one combined fp32 -> bf16 channels_last copy (3.3 vs 7 ms per batch
        # of 8 16x160x160 clips). The caller's tensor is never modified.
        x = x.to(device=self.device, dtype=dtype)
        if self.channels_last and x.dim() == 5:
            return x.contiguous(memory_format=torch.channels_last_3d)
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def _run(self, fn, x: torch.Tensor) -> torch.Tensor:
        if self.autocast and self.compute_dtype != torch.float32:
            with torch.autocast(self.device.type, dtype=self.compute_dtype):
                out = fn(x)
        else:
            out = fn(x)
        return out.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """fp32 clip(s) ``(N, C, T, H, W)`` -> fp32 logits."""
        compiled = self.__dict__["_compiled"]
        if compiled is not None:
            fn = compiled
        else:
            fn = self._fused_graph("forward") or self.net
        return self._run(fn, self._prep(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """fp32 clip(s) -> fp32 pooled features (the wrapped network's ``forward_features``)."""
        if not hasattr(self.net, "forward_features"):
            raise AttributeError(f"{type(self.net).__name__} has no forward_features()")
        fn = self._fused_graph("forward_features") or self.net.forward_features
        return self._run(fn, self._prep(x))

    def forward_head(self, feat: torch.Tensor) -> torch.Tensor:
        """fp32 features -> fp32 logits (the wrapped network's ``forward_head``)."""
        dtype = torch.float32 if self.autocast else self.compute_dtype
        return self._run(self.net.forward_head, feat.to(device=self.device, dtype=dtype))

    def train(self, mode: bool = True) -> "InferenceModel":
        """Always stays in eval mode: BatchNorm is folded and weights are cast."""
        if mode:
            log.warning("InferenceModel is inference-only; train() ignored (train the original model)")
        return super().train(False)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            net = super().__getattr__("net")
            return getattr(net, name)


def optimize_for_inference(model: nn.Module, *, dtype: str | torch.dtype = "auto",
                           channels_last: bool = True, fold_bn: bool = True,
                           compile: bool = False, autocast: bool = False,
                           device: str | torch.device | None = None,
                           compile_mode: Optional[str] = None,
                           fuse: Optional[bool] = None) -> InferenceModel:
    """Return a fast eval-only copy of ``model``; the caller's model is not modified.

    Args:
        model: any network (P3DResNet etc.); BN layers directly after convs get folded.
        dtype: compute dtype: ``'auto'`` (bf16 where the CPU/GPU supports it, fp16 on an
            older GPU, else fp32), ``'bf16'``, ``'fp16'`` or ``'fp32'``.
        channels_last: use ``channels_last_3d`` for weights and input.
        fold_bn: fold BatchNorm into the preceding convolution.
        compile: wrap the forward pass in ``torch.compile`` (first call compiles: seconds
            to a minute; ``forward_features`` stays eager).
        autocast: keep weights in fp32 and run under ``torch.autocast(dtype)`` instead of
            casting the weights (slower than cast weights; offered for comparison).
        device: move the copy to this device (default: where the model's parameters are).
        compile_mode: passed to ``torch.compile(mode=...)``; without it the model is compiled
            with inductor's ``freezing`` (weights become constants: pre-packed convs).
        fuse: fuse conv + ReLU / residual add + ReLU into single oneDNN calls
            (:func:`p3d_lightning.models.fusion.fuse_pointwise`). ``None`` (default): on for a
            CPU device when not compiling and not in autocast mode and the model is
            traceable by torch.fx; ``True`` raises if fusion is impossible.

    Returns:
        :class:`InferenceModel` with ``forward(x)``, ``forward_features(x)`` and
        ``forward_head(feat)``, each taking fp32 input and returning fp32.
    """
    if isinstance(model, InferenceModel):
        raise TypeError("optimize_for_inference: model is already an InferenceModel")
    if device is None:
        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)
    cdtype = resolve_dtype(dtype, device)

    net = copy.deepcopy(model).eval()
    folded = 0
    if fold_bn:
        net = fold_batchnorm(net, inplace=True)
        folded = net._fastpath_folded_bn
    net = net.to(device)
    if not autocast:
        net = net.to(cdtype)
    net = _to_memory_format(net, channels_last)
    for p in net.parameters():
        p.requires_grad_(False)

    fused: Dict[str, nn.Module] = {}
    want_fuse = fuse if fuse is not None else (device.type == "cpu" and not compile and not autocast)
    if want_fuse:
        fused = _build_fused(net, strict=bool(fuse))

    compiled = None
    if compile:
        if compile_mode is not None:
            compiled = torch.compile(net, mode=compile_mode)
        else:
            # Inference only: let inductor freeze the weights as constants, so oneDNN convs get
            # pre-packed weights and constant folding (P3D-50 bf16, 2-core CPU: 35 -> 43 clips/s).
            compiled = torch.compile(net, options={"freezing": True})
    return InferenceModel(net, cdtype, channels_last, autocast=autocast, compiled=compiled,
                          folded_bn=folded, fused=fused).eval()


def _build_fused(net: nn.Module, strict: bool) -> Dict[str, nn.Module]:
    """Fused graphs of ``forward`` (and ``forward_features`` if present) for the CPU."""
    from .fusion import fuse_pointwise, fusion_available

    if not fusion_available():
        if strict:
            raise RuntimeError("optimize_for_inference(fuse=True): this PyTorch build has no "
                               "oneDNN fused convolution (torch.ops.mkldnn._convolution_pointwise)")
        return {}
    out: Dict[str, nn.Module] = {}
    for method in ("forward", "forward_features"):
        if method != "forward" and not hasattr(net, method):
            continue
        try:
            out[method] = fuse_pointwise(net, method)
        except Exception as err:
            if strict:
                raise RuntimeError(f"optimize_for_inference(fuse=True): cannot trace "
                                   f"{type(net).__name__}.{method} with torch.fx: {err}") from err
            log.info("fastpath: no conv/ReLU fusion for %s.%s (%s: %s)",
                     type(net).__name__, method, type(err).__name__, err)
    return out


# --------------------------------------------------------------------------------------
# Numerical check
# --------------------------------------------------------------------------------------
@torch.no_grad()
def compare_outputs(reference: nn.Module, candidate: nn.Module,
                    clips: torch.Tensor | Iterable[torch.Tensor | Tuple[torch.Tensor, torch.Tensor]],
                    batch_size: int = 8) -> Dict[str, float]:
    """Compare two models' logits on the same clips.

    ``clips`` is a tensor ``(N, C, T, H, W)`` or an iterable of batches, each a clip tensor or
    a ``(clips, labels)`` pair. Returns ``top1_agreement`` (fraction of clips with the same
    argmax), ``max_abs_diff``, ``max_rel_diff`` (max |diff| divided by max |reference logit|),
    ``num_clips`` and ``within_bf16_tol`` (every logit within ``BF16_LOGIT_RTOL * max|ref| +
    BF16_LOGIT_ATOL``) and ``num_nonfinite`` (clips whose candidate logits contain inf/NaN, e.g.
    fp16 overflow; ``max_abs_diff`` is then inf). With labels, also ``acc_reference`` and
    ``acc_candidate`` (top-1 accuracy of each). The reference is put in eval mode (restored
    afterwards).
    """
    was_training = reference.training
    reference.eval()
    if isinstance(clips, torch.Tensor):
        batches = clips.split(batch_size)
    else:
        batches = clips
    agree = total = nonfinite = right_ref = right_out = labelled = 0
    max_abs = 0.0
    max_ref = 0.0
    try:
        for batch in batches:
            x, y = batch if isinstance(batch, (tuple, list)) else (batch, None)
            ref = reference(x).float()
            out = candidate(x).float()
            nonfinite += int((~torch.isfinite(out)).any(1).sum())
            agree += int((ref.argmax(1) == out.argmax(1)).sum())
            total += ref.shape[0]
            if y is not None:
                y = y.to(ref.device)
                right_ref += int((ref.argmax(1) == y).sum())
                right_out += int((out.argmax(1) == y).sum())
                labelled += int(y.numel())
            diff = (ref - out).abs().max()
            max_abs = max(max_abs, float(diff) if torch.isfinite(diff) else float("inf"))
            max_ref = max(max_ref, float(ref.abs().max()))
    finally:
        reference.train(was_training)
    if total == 0:
        raise ValueError("compare_outputs: no clips given")
    res = {
        "num_clips": total,
        "top1_agreement": agree / total,
        "max_abs_diff": max_abs,
        "max_rel_diff": max_abs / max(max_ref, 1e-12),
        "within_bf16_tol": max_abs <= BF16_LOGIT_RTOL * max_ref + BF16_LOGIT_ATOL,
        "num_nonfinite": nonfinite,
    }
    if labelled:
        res.update(acc_reference=right_ref / labelled, acc_candidate=right_out / labelled)
    return res


__all__ = [
    "optimize_for_inference", "InferenceModel", "fold_batchnorm", "find_conv_bn_pairs",
    "compare_outputs", "cpu_supports_bf16", "resolve_dtype", "dtype_name",  # the last three: p3d_lightning.precision's
    "BF16_LOGIT_RTOL", "BF16_LOGIT_ATOL",
]
