"""``p3d-bench``: inference (default), training (``--train``), input-pipeline (``--data``) speed
and fast-path numerics of a trained checkpoint (``--check``), against plain fp32 and the ceiling.

Prints a table and writes ``<out-dir>/bench_<mode>_<time>[_tag].{csv,json}``; the measurements
are :mod:`p3d_lightning.speed`'s. ``p3d-bench --help`` lists the options, ``docs/speed.md`` has
measured numbers.
"""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from p3d_lightning.experiment import parse_overrides
from p3d_lightning.precision import PrecisionUnsupportedError, bf16_supported, check_training_precision, \
    resolve_inference_dtype
from p3d_lightning.speed.ceiling import measure_ceiling
from p3d_lightning.speed.environment import environment_info, load_average, malloc_reexec
from p3d_lightning.speed.inference import (DEFAULT_CPU_SETTINGS, DEFAULT_CPU_SETTINGS_NO_BF16,
                                           DEFAULT_GPU_SETTINGS, INFERENCE_SETTINGS, run_inference_benchmark)
from p3d_lightning.speed.numerics import check_fast_path_on_data
from p3d_lightning.speed.pipeline import measure_data_pipeline, workers_needed
from p3d_lightning.speed.training import SYNTHETIC_TRAIN_CFG, TrainSetting, run_training_benchmark
from p3d_lightning.upstream_warnings import filter_upstream_warnings


def _parse_shape(text: str) -> Tuple[int, ...]:
    parts = [int(p) for p in re.split(r"[x,\s]+", text.strip()) if p]
    if len(parts) == 3:
        return (3, *parts)  # TxHxW -> 3xTxHxW
    if len(parts) == 4:
        return tuple(parts)
    raise argparse.ArgumentTypeError(f"clip shape must be TxHxW or CxTxHxW (e.g. 16x160x160), got {text!r}")


def _parse_model_spec(spec: str, default_bs: Sequence[int]) -> Tuple[str, List[int]]:
    """'p3d199:4' -> ('p3d199', [4]); 'p3d' -> ('p3d', default_bs)."""
    name, _, bs = spec.partition(":")
    if bs:
        try:
            return name, [int(b) for b in bs.split(",")]
        except ValueError:
            raise SystemExit(f"p3d-bench: --models entry {spec!r}: batch sizes after ':' must be "
                             f"integers, e.g. p3d199:4")
    return name, list(default_bs)


def _train_setting(spec: str, device: str | torch.device = "cpu") -> Dict[str, Any]:
    """Parse a --train-settings entry; a precision this device cannot run exits with a clear message."""
    ckpt = spec.endswith("_ckpt")
    base = spec[:-5] if ckpt else spec
    if base == "fast":
        prec = check_training_precision("auto", torch.device(device).type)
        prec = "fp32" if prec == "32-true" else prec
        return {"precision": prec, "channels_last": True, "checkpoint": ckpt}
    cl = base.endswith("_cl")
    prec = base[:-3] if cl else base
    if prec not in ("fp32", "bf16-mixed", "16-mixed"):
        raise SystemExit(f"p3d-bench: --train-settings entry {spec!r}: expected fp32 | bf16-mixed | "
                         f"16-mixed, optionally + '_cl' and/or '_ckpt', or fast")
    try:
        check_training_precision(prec, torch.device(device).type, option=f"--train-settings {spec}")
    except PrecisionUnsupportedError as err:
        raise SystemExit(f"p3d-bench: {err}") from None
    return {"precision": prec, "channels_last": cl, "checkpoint": ckpt}


def _check_inference_settings(settings: Sequence[str], device: torch.device) -> None:
    """Exit with one clear message if a setting names a dtype this device cannot run."""
    for s in settings:
        kw = INFERENCE_SETTINGS.get(s) or {}
        if "dtype" in kw:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    resolve_inference_dtype(kw["dtype"], device, what=f"p3d-bench --settings {s}")
            except PrecisionUnsupportedError as err:
                raise SystemExit(f"p3d-bench: {err}") from None


def _fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.{nd}f}"
    return str(v)


def _print_table(rows: List[Dict[str, Any]], cols: List[Tuple[str, str, int]], title: str) -> str:
    head = [c[1] for c in cols]
    body = [[_fmt(r.get(c[0]), c[2]) for c in cols] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    lines = [title, "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
             "| " + " | ".join("-" * w for w in widths) + " |"]
    lines += ["| " + " | ".join(b[i].ljust(widths[i]) for i in range(len(cols))) + " |" for b in body]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def _write_outputs(out_dir: Path, stem: str, rows: List[Dict[str, Any]], meta: Dict[str, Any]) -> Tuple[Path, Path]:
    """CSV (lists and dicts as JSON text: the only place they become strings) and JSON, atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / f"{stem}.csv"
    json_path = out_dir / f"{stem}.json"
    keys: List[str] = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    tmp = csv_path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (json.dumps(v) if isinstance(v, (list, tuple, dict)) else v) for k, v in r.items()})
    tmp.replace(csv_path)
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=str))
    tmp.replace(json_path)
    return csv_path, json_path


INFER_COLS = [("model", "model", 0), ("batch_size", "bs", 0), ("setting", "setting", 0),
              ("precision", "precision", 0), ("fused_ops", "fused", 0), ("clips_per_s", "clips/s", 2),
              ("frames_per_s", "frames/s", 1), ("speedup_vs_fp32", "x fp32", 2),
              ("achieved_gflops", "GFLOP/s", 0), ("fraction_of_ceiling", "of ceiling", 2),
              ("batch_time_ms_median", "ms/batch", 0), ("peak_mem_mb", "peak MB", 0),
              ("minor_faults_per_batch", "faults/batch", 0), ("top1_agreement_vs_fp32", "top1 agree", 2)]
TRAIN_COLS = [("model", "model", 0), ("batch_size", "bs", 0), ("setting", "setting", 0),
              ("precision", "precision", 0), ("channels_last", "CL", 0),
              ("clips_per_s", "clips/s", 2), ("speedup_vs_fp32", "x fp32", 2),
              ("achieved_gflops", "GFLOP/s", 0), ("fraction_of_ceiling", "of ceiling", 2),
              ("batch_time_ms_median", "ms/step", 0), ("peak_mem_mb", "peak MB", 0),
              ("peak_mem_mb_per_clip", "MB/clip", 0), ("loss_first", "loss0", 3),
              ("loss_last", "lossN", 3)]
DATA_COLS = [("num_workers", "workers", 0), ("batch_size", "bs", 0), ("clips_per_s", "clips/s", 1),
             ("clips_per_s_per_worker", "clips/s/worker", 1)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="p3d-bench",
        description="Measure P3D inference (default), training (--train) or input-pipeline "
                    "(--data) speed against the plain fp32 path and the machine's ceiling; "
                    "prints a table and writes CSV + JSON.")
    p.add_argument("--models", nargs="+", default=["p3d"],
                   help="model names (create_model); append ':BS[,BS]' for per-model batch sizes, "
                        "e.g. p3d:8 p3d199:4 (default: p3d)")
    p.add_argument("--clip-shape", type=_parse_shape, default=None,
                   help="TxHxW or CxTxHxW (default 16x160x160; 1x224x224 for resnet50 if it is "
                        "the only model)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[8])
    p.add_argument("--num-classes", type=int, default=101)
    p.add_argument("--width-mult", type=float, default=None)
    p.add_argument("--settings", nargs="+", default=None, choices=sorted(INFERENCE_SETTINGS),
                   help=f"inference settings (default CPU: {' '.join(DEFAULT_CPU_SETTINGS)}; "
                        f"GPU: {' '.join(DEFAULT_GPU_SETTINGS)})")
    p.add_argument("--compile", action="store_true", help="also measure fast_compile")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2,
                   help="interleaved measurement rounds per setting (default 2)")
    p.add_argument("--device", default=None, help="cpu or cuda[:i] (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--no-ceiling", action="store_true", help="skip the matmul/conv ceiling")
    p.add_argument("--malloc", choices=["default", "tuned"], default="default",
                   help="'tuned': re-exec with GLIBC_TUNABLES raising the malloc mmap/trim "
                        "threshold (large activations reused instead of page-faulted each call)")
    p.add_argument("--out-dir", default="bench_results")
    p.add_argument("--tag", default="", help="suffix for the output file names")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: p3d_tiny, 3x16x32x32, batch 2, 1 repeat, 1 round, small ceiling")
    g = p.add_argument_group("training (--train)")
    g.add_argument("--train", action="store_true", help="measure training clips/s instead")
    g.add_argument("--train-clip-shape", type=_parse_shape, default=None,
                   help="default 16x80x80 (the synthetic-ablation configuration, "
                        "experiments/synthetic/p3d.yaml; with --width-mult defaulting to 0.125)")
    g.add_argument("--train-batch-size", type=int, default=16)
    g.add_argument("--train-steps", type=int, default=5)
    g.add_argument("--train-settings", nargs="+", default=["fp32", "fast"],
                   help="fp32, fp32_cl, bf16-mixed, bf16-mixed_cl, 16-mixed_cl, fast (the "
                        "training fast path: the machine's default precision + channels_last_3d, "
                        "what `p3d fit` uses), and any of them + '_ckpt' (activation checkpointing)")
    g = p.add_argument_group("numerics of a trained checkpoint (--check)")
    g.add_argument("--check", metavar="CKPT", default=None,
                   help="compare the fast path with plain fp32 on the test clips of a trained "
                        "checkpoint (top-1 agreement, logit difference, accuracy of each)")
    g.add_argument("--config", default=None, help="the checkpoint's experiment YAML (for --check)")
    g.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="dotted config overrides for --check, e.g. data.root=/data/ucf101")
    g.add_argument("--stage", default="test", choices=["test", "val"])
    g.add_argument("--max-batches", type=int, default=None)
    g = p.add_argument_group("input pipeline (--data)")
    g.add_argument("--data", action="store_true", help="measure the input pipeline instead")
    g.add_argument("--data-root", default=None,
                   help="dataset root (default: a synthetic set under <out-dir>/synthetic_data)")
    g.add_argument("--dataset", default="synthetic")
    g.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    g.add_argument("--data-batches", type=int, default=10)
    g.add_argument("--synthetic-size", type=lambda t: tuple(int(v) for v in t.split("x")),
                   default=(240, 320), help="HxW of generated synthetic videos (default 240x320, "
                                            "the UCF101 frame size)")
    g.add_argument("--synthetic-videos-per-class", type=int, default=8)
    g.add_argument("--target-clips-per-s", type=float, nargs="*", default=None,
                   help="model rates to feed (default: the training rates of the last --train "
                        "run's JSON in --out-dir if present)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``p3d-bench``: parse, pick the mode, measure, print the table, write the files."""
    filter_upstream_warnings()  # known-harmless upstream noise, by message (not ours)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.malloc == "tuned" and not args.quick:
        malloc_reexec(argv, "p3d_lightning.commands.bench")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    # a precision this machine cannot run is an error now, not after the ceiling measurement
    if args.train:
        for spec in args.train_settings:
            _train_setting(spec, device)
    elif args.settings:
        _check_inference_settings(args.settings, device)
    if args.quick:
        if args.models == ["p3d"]:
            args.models = ["p3d_tiny"]
        args.clip_shape = args.clip_shape or (3, 16, 32, 32)
        args.batch_sizes = [2]
        args.repeats, args.warmup, args.rounds = 1, 1, 1
        args.train_clip_shape = args.train_clip_shape or (3, 16, 32, 32)
        args.train_batch_size, args.train_steps = 2, 1
        args.workers, args.data_batches = [0], 2
        if args.width_mult is None and any(m.split(":")[0] != "p3d_tiny" for m in args.models):
            args.width_mult = 0.25
    out_dir = Path(args.out_dir)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    mode = "train" if args.train else "data" if args.data else "check" if args.check else "infer"
    stem = f"bench_{mode}_{stamp}{('_' + args.tag) if args.tag else ''}"
    meta: Dict[str, Any] = {"argv": argv, "mode": mode, "time": stamp,
                            "load_average_start": load_average(), **environment_info(device)}
    print(f"[p3d-bench] {meta['device_name']} | torch {torch.__version__} | "
          f"{torch.get_num_threads()} threads | GLIBC_TUNABLES={meta['glibc_tunables'] or '-'} | "
          f"load {meta['load_average_start']}", flush=True)

    if args.check:
        parser = build_parser()
        if not args.config:
            parser.error("--check needs --config (the checkpoint's experiment YAML)")
        try:
            overrides = parse_overrides(args.overrides)
        except ValueError as err:
            parser.error(str(err))
        row = check_fast_path_on_data(args.check, args.config, stage=args.stage,
                                      overrides=overrides or None, max_batches=args.max_batches,
                                      device=device)
        meta["load_average_end"] = load_average()
        csv_path, json_path = _write_outputs(out_dir, stem, [row], meta)
        print(f"[p3d-bench] wrote {csv_path} and {json_path}", flush=True)
        return 0

    if args.data:
        rows = _run_data(args, out_dir)
        meta["load_average_end"] = load_average()
        csv_path, json_path = _write_outputs(out_dir, stem, rows, meta)
        _print_table(rows, DATA_COLS, "\nInput pipeline (decode + sample + transform)")
        if args.target_clips_per_s is None:
            targets = _last_train_rates(out_dir)
        else:
            targets = [("a model", t) for t in args.target_clips_per_s]
        for label, rate in targets:
            n = workers_needed(rate, rows)
            note = " (loading in the main process keeps up)" if n == 0 else ""
            print(f"[p3d-bench] to feed {label} at {rate:.1f} clips/s: ~{n} worker(s){note}; decoding "
                  f"costs ~{rate / max(r['clips_per_s_per_worker'] for r in rows):.2f} core(s) at that "
                  f"rate", flush=True)
            meta.setdefault("workers_needed", {})[label] = n
        _write_outputs(out_dir, stem, rows, meta)
        print(f"[p3d-bench] wrote {csv_path} and {json_path}")
        return 0

    if not args.no_ceiling:
        meta["ceiling"] = measure_ceiling(device, quick=args.quick, repeats=2 if args.quick else 5)
        c = meta["ceiling"]
        print("[p3d-bench] ceiling GFLOP/s: " + ", ".join(
            f"{k[:-7]}={v:.0f}" for k, v in c.items() if k.endswith("_gflops")), flush=True)

    if args.train:
        rows = _run_train(args, device, meta.get("ceiling"))
        meta["load_average_end"] = load_average()
        csv_path, json_path = _write_outputs(out_dir, stem, rows, meta)
        _print_table(rows, TRAIN_COLS, "\nTraining (forward + backward + SGD step)")
    else:
        models = [_parse_model_spec(m, args.batch_sizes) for m in args.models]
        shape = args.clip_shape or ((3, 1, 224, 224) if all(n == "resnet50" for n, _ in models)
                                    else (3, 16, 160, 160))
        settings = list(args.settings or (DEFAULT_GPU_SETTINGS if device.type == "cuda"
                                          else DEFAULT_CPU_SETTINGS))
        if device.type == "cpu" and args.settings is None:
            if not bf16_supported("cpu"):  # no native bf16: the fp32 ladder up to the fast path
                settings = list(DEFAULT_CPU_SETTINGS_NO_BF16)
        _check_inference_settings(settings, device)
        if args.compile and "fast_compile" not in settings:
            settings.append("fast_compile")
        if "fp32" not in settings:
            settings.insert(0, "fp32")
        rows = run_inference_benchmark(
            models, shape, settings, num_classes=args.num_classes, width_mult=args.width_mult,
            warmup=args.warmup, repeats=args.repeats, rounds=args.rounds, device=device,
            ceiling=meta.get("ceiling"))
        meta["load_average_end"] = load_average()
        csv_path, json_path = _write_outputs(out_dir, stem, rows, meta)
        _print_table(rows, INFER_COLS, f"\nInference, clip {'x'.join(map(str, shape))}")
    print(f"[p3d-bench] load average start {meta['load_average_start']} end {meta['load_average_end']}")
    print(f"[p3d-bench] wrote {csv_path} and {json_path}", flush=True)
    return 0


def _run_train(args: argparse.Namespace, device: torch.device,
               ceiling: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    shape = args.train_clip_shape or SYNTHETIC_TRAIN_CFG["clip_shape"]
    if args.width_mult is None and args.train_clip_shape is None:
        args.width_mult = SYNTHETIC_TRAIN_CFG["width_mult"]
    settings = [(s, TrainSetting(**_train_setting(s, device))) for s in args.train_settings]
    models = [_parse_model_spec(m, [args.train_batch_size])[0] for m in args.models]
    return run_training_benchmark(
        models, shape, settings, batch_size=args.train_batch_size, num_classes=args.num_classes,
        width_mult=args.width_mult, steps=args.train_steps, warmup=1 if args.quick else 2,
        rounds=args.rounds, device=device, ceiling=ceiling, log=lambda m: print(m, flush=True))


def _run_data(args: argparse.Namespace, out_dir: Path) -> List[Dict[str, Any]]:
    root = Path(args.data_root) if args.data_root else out_dir / "synthetic_data"
    shape = args.clip_shape or (3, 16, 160, 160)
    extra: Dict[str, Any] = {}
    num_classes: Optional[int] = args.num_classes
    if args.dataset == "synthetic":
        num_classes = None
        extra = dict(synthetic_size=tuple(args.synthetic_size),
                     synthetic_videos_per_class=args.synthetic_videos_per_class)
        if args.quick:
            extra.update(synthetic_num_pairs=1, synthetic_videos_per_class=8,
                         synthetic_size=(48, 64), synthetic_num_frames=20,
                         resize=(40, 48))
    rows = []
    for w in args.workers:
        res = measure_data_pipeline(root, num_workers=w, batch_size=args.batch_sizes[0],
                                    num_batches=args.data_batches, clip_len=shape[1],
                                    crop_size=shape[2], dataset=args.dataset,
                                    num_classes=num_classes, **extra)
        res["clips_per_s_per_worker"] = res["clips_per_s"] / max(w, 1)
        print(f"[p3d-bench]   data workers={w}: {res['clips_per_s']:.1f} clips/s", flush=True)
        rows.append(res)
    return rows


def _last_train_rates(out_dir: Path) -> List[Tuple[str, float]]:
    files = sorted(out_dir.glob("bench_train_*.json"))
    if not files:
        return []
    data = json.loads(files[-1].read_text())
    return [(f"{r['model']} {r['setting']} training", float(r["clips_per_s"])) for r in data["rows"]]


if __name__ == "__main__":
    sys.exit(main())
