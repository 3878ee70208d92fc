"""``results.csv``: the ablation's one row per model, its schema, and the only place values become text.

The runner keeps typed values (numbers, clip shapes as tuples); :func:`write_results` turns
them into CSV cells (floats to 6 significant digits, shapes as ``"3x16x80x80"``) and writes the
file atomically, so an interrupted ablation never leaves half a file. :func:`read_results`
parses the numeric columns back to numbers; clip shapes stay text in a read row and
:func:`parse_shape` / :func:`is_frame_model` read them.
"""
from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

__all__ = ["RESULT_FIELDS", "INT_FIELDS", "FLOAT_FIELDS", "SHAPE_FIELDS", "as_cells", "atomic_write", "format_shape",
           "is_frame_model", "parse_shape", "read_results", "record", "row_key", "to_float", "update_results",
           "write_results"]

#: Columns of ``results.csv``, in order.
RESULT_FIELDS = [
    "model",
    "arch",
    "seed",
    "params",
    "size_mb",
    "gmacs_per_clip",
    "clip_shape",
    "clip_acc1",
    "clip_acc5",
    "video_acc1",
    "video_acc5",
    "infer_clips_per_s",
    "infer_frames_per_s",
    "infer_device",
    "infer_precision",
    "infer_batch_size",
    "infer_threads",
    "fast_path_top1_agreement",
    "fast_path_max_rel_logit_diff",
    "paper_scale_shape",
    "paper_scale_clips_per_s",
    "paper_scale_frames_per_s",
    "paper_scale_precision",
    "paper_scale_batch_size",
    "train_clips_per_s",
    "train_steps",
    "train_time_s",
    "checkpoint",
    "wandb_dir",
    "finished_at",
]
#: Integer columns (read back as ``int``).
INT_FIELDS = frozenset({"seed", "params", "infer_batch_size", "infer_threads", "paper_scale_batch_size", "train_steps"})
#: Clip shapes (C, T, H, W): tuples in the runner, ``"CxTxHxW"`` text in the file.
SHAPE_FIELDS = frozenset({"clip_shape", "paper_scale_shape"})
#: Real-valued columns (read back as ``float``).
FLOAT_FIELDS = frozenset({
    "size_mb", "gmacs_per_clip", "clip_acc1", "clip_acc5", "video_acc1", "video_acc5", "infer_clips_per_s",
    "infer_frames_per_s", "fast_path_top1_agreement", "fast_path_max_rel_logit_diff", "paper_scale_clips_per_s",
    "paper_scale_frames_per_s", "train_clips_per_s", "train_time_s",
})


def to_float(value: Any) -> Optional[float]:
    """A cell as a float, or ``None`` when it is empty, not a number or NaN."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def parse_shape(value: Any) -> Optional[Tuple[int, ...]]:
    """A clip shape as a tuple of ints: from ``"3x16x80x80"``, a sequence, or ``None``/``""`` (-> None)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        try:
            return tuple(int(p) for p in value.strip().split("x"))
        except ValueError:
            raise ValueError(f"not a clip shape 'CxTxHxW': {value!r}") from None
    return tuple(int(p) for p in value)


def format_shape(shape: Sequence[int]) -> str:
    """``(3, 16, 80, 80)`` -> ``"3x16x80x80"`` (the file's form)."""
    return "x".join(str(int(s)) for s in shape)


def is_frame_model(row: Mapping[str, Any]) -> bool:
    """True for a frame-level network (clip shape C x 1 x H x W): the paper reports its speed in frames/s."""
    shape = parse_shape(row.get("clip_shape"))
    return shape is not None and len(shape) == 4 and shape[1] == 1


def record(row: Mapping[str, Any]) -> Dict[str, Any]:
    """``row`` with its shapes (any tuple/list of ints) as text, numbers kept: for W&B summaries,
    which ``reports`` reads back like CSV rows."""
    return {k: format_shape(v) if isinstance(v, (tuple, list)) else v for k, v in row.items()}


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (tuple, list)):
        return format_shape(value)
    return value


def as_cells(row: Mapping[str, Any], fields: Sequence[str] = RESULT_FIELDS) -> Dict[str, Any]:
    """``row`` as CSV cells, in ``fields`` order (default :data:`RESULT_FIELDS`; missing: empty)."""
    return {k: _cell(row.get(k)) for k in fields}


def _parse(key: str, text: str) -> Any:
    if key in INT_FIELDS or key in FLOAT_FIELDS:
        number = to_float(text)
        if number is None:
            return None
        return int(number) if key in INT_FIELDS else number
    return text


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_results(path: os.PathLike) -> List[Dict[str, Any]]:
    """Rows of a ``results.csv`` (empty list if it does not exist): numeric columns as numbers
    (``None`` where empty), the rest (shapes included) as text."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [{k: _parse(k, v) for k, v in row.items()} for row in csv.DictReader(f)]


def write_results(path: os.PathLike, rows: Sequence[Mapping[str, Any]],
                  fields: Sequence[str] = RESULT_FIELDS) -> None:
    """Write ``rows`` (typed or as read) as ``results.csv`` (or another CSV of ``fields``, e.g.
    the across-seeds ``summary.csv``), atomically; keys outside ``fields`` are left out."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(as_cells(row, fields))
    atomic_write(Path(path), buf.getvalue().encode())


def row_key(row: Mapping[str, Any]) -> Tuple[str, Optional[int]]:
    """A row's identity in ``results.csv``: ``(model, seed)`` (seed ``None`` in files written
    before the seed column)."""
    seed = to_float(row.get("seed"))
    return str(row["model"]), None if seed is None else int(seed)


def update_results(path: os.PathLike, row: Optional[Mapping[str, Any]] = None,
                   order: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
    """Put ``row`` in ``results.csv`` (replacing the row of the same model and seed) and/or sort
    the rows by ``order`` (model names; each model's seeds ascending); returns the rows as read back."""
    rows = read_results(path)
    if row is not None:
        rows = [r for r in rows if row_key(r) != row_key(row)] + [dict(row)]
    if order is not None:
        rank = {m: i for i, m in enumerate(order)}
        rows.sort(key=lambda r: (rank.get(r["model"], len(rank)), -1 if r.get("seed") is None else int(r["seed"])))
    write_results(path, rows)
    return read_results(path)
