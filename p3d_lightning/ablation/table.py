"""Table 1 as Markdown and the accuracy-vs-speed figure: ours beside the paper's, clearly labelled.

Both read rows as :func:`~p3d_lightning.ablation.results.read_results` returns them (or the
runner's typed rows). The frame-level ResNet-50 is reported in frames/s as the paper does; the
figure divides by 16 (a 16-frame clip costs 16 frames) to put it on the clips/s axis.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from p3d_lightning.ablation.results import atomic_write, format_shape, is_frame_model, parse_shape, to_float
from p3d_lightning.paper import PAPER_SPEED_NOTE, TABLE1

__all__ = ["plot_accuracy_vs_speed", "write_markdown_table", "write_outputs"]


def _speed(row: Mapping[str, Any], prefix: str) -> str:
    """The ``prefix`` speed (``infer`` / ``paper_scale``) in the paper's unit, or ``-``."""
    clips = to_float(row.get(f"{prefix}_clips_per_s"))
    if clips is None:
        return "-"
    if is_frame_model(row):
        return f"{to_float(row.get(f'{prefix}_frames_per_s')):.1f} frame/s"
    return f"{clips:.1f} clip/s"


def _pct(row: Mapping[str, Any], key: str) -> str:
    v = to_float(row.get(key))
    return "-" if v is None else f"{100 * v:.1f}%"


def _text(row: Mapping[str, Any], key: str) -> str:
    """A settings cell for the footnote: ``?`` when the key is absent, empty when unmeasured."""
    value = row.get(key, "?")
    return "" if value is None else str(value)


def write_markdown_table(rows: Sequence[Mapping[str, Any]], path: Optional[os.PathLike] = None) -> str:
    """Table 1 in Markdown: our measured numbers beside the paper's (labelled as the paper's)."""
    lines = [
        "| Method | Params | Size (MB) | GMACs/clip | Speed, trained net | Speed, paper-scale net | "
        "Clip top-1 | Video top-1 | Paper: size | Paper: speed | Paper: top-1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        paper = TABLE1.get(row["model"])
        params = to_float(row.get("params"))
        size = to_float(row.get("size_mb"))
        gmacs = to_float(row.get("gmacs_per_clip"))
        cells = [
            paper.method if paper else row["model"],
            "-" if params is None else f"{params / 1e6:.2f} M",
            "-" if size is None else f"{size:.1f}",
            "-" if gmacs is None else f"{gmacs:.3g}",
            _speed(row, "infer"),
            _speed(row, "paper_scale"),
            _pct(row, "clip_acc1"),
            _pct(row, "video_acc1"),
            f"{paper.size_mb:.0f}" if paper else "-",
            f"{paper.speed} {paper.speed_unit}" if paper else "-",
            f"{paper.top1}%" if paper else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if rows:
        first = rows[0]
        scales: List[str] = []
        for row in rows:
            shape = parse_shape(row.get("paper_scale_shape"))
            if shape:
                desc = (f"{format_shape(shape)} ({row.get('paper_scale_precision') or '?'}, "
                        f"batch {row.get('paper_scale_batch_size') or '?'})")
                if desc not in scales:
                    scales.append(desc)
        lines += [
            "",
            f"Ours: speed on {_text(first, 'infer_device')}, {_text(first, 'infer_precision')}, "
            f"batch {_text(first, 'infer_batch_size')}, {_text(first, 'infer_threads')} threads; "
            "paper-scale = the full-size architecture of the row at "
            f"{' / '.join(scales) if scales else '-'}. "
            "Accuracy is on the dataset of this ablation, not UCF101 unless it says so.",
            f"Paper columns: Table 1 of Qiu et al. (ICCV 2017), UCF101 split 1; {PAPER_SPEED_NOTE}.",
        ]
    text = "\n".join(lines) + "\n"
    if path is not None:
        atomic_write(Path(path), text.encode())
    return text


def plot_accuracy_vs_speed(rows: Sequence[Mapping[str, Any]], path: os.PathLike, title: str = "") -> Path:
    """Accuracy vs clips/s: ours (left; the paper-scale speed where measured, else the trained
    net's) and the paper's Table 1 (right), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_ours, ax_paper) = plt.subplots(1, 2, figsize=(11, 4.2))
    for row in rows:
        speed = to_float(row.get("paper_scale_clips_per_s")) or to_float(row.get("infer_clips_per_s"))
        if is_frame_model(row):  # a 16-frame clip costs 16 frames for the frame-level baseline
            fps = to_float(row.get("paper_scale_frames_per_s")) or to_float(row.get("infer_frames_per_s"))
            speed = fps / 16 if fps else None
        acc = to_float(row.get("video_acc1"))
        if speed is None or acc is None:
            continue
        ax_ours.scatter(speed, 100 * acc, s=60)
        ax_ours.annotate(row["model"], (speed, 100 * acc), textcoords="offset points", xytext=(5, 4))
    speed_kind = "paper-scale" if rows and to_float(rows[0].get("paper_scale_clips_per_s")) else "trained"
    ax_ours.set_xlabel(f"clips/s ({speed_kind} net; ResNet-50: frames/s / 16)")
    ax_ours.set_ylabel("video top-1 (%)")
    ax_ours.set_title(f"Ours: {title}" if title else "Ours")
    ax_ours.grid(alpha=0.3)
    for model, paper in TABLE1.items():
        speed = paper.speed / 16 if paper.speed_unit == "frame/s" else paper.speed
        ax_paper.scatter(speed, paper.top1, s=60, marker="s")
        ax_paper.annotate(model, (speed, paper.top1), textcoords="offset points", xytext=(5, 4))
    ax_paper.set_xlabel("clips/s (ResNet-50: frames/s / 16)")
    ax_paper.set_ylabel("top-1 (%)")
    ax_paper.set_title("Paper's Table 1 (UCF101 split 1)")
    ax_paper.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, buf.getvalue())
    return path


def write_outputs(output: Path, rows: Sequence[Dict[str, Any]], title: str) -> None:
    """``table.md`` and ``accuracy_vs_speed.png`` in ``output``, from the rows so far."""
    write_markdown_table(rows, output / "table.md")
    plot_accuracy_vs_speed(rows, output / "accuracy_vs_speed.png", title=title)
