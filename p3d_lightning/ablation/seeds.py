"""Across seeds: mean +- std and a 95% interval per model, and paired comparisons between models.

An ablation run with ``seeds: [0, 1, 2]`` (or ``p3d-ablation --seeds 0 1 2``) trains every model
once per seed, with everything else equal; ``results.csv`` holds one row per (model, seed).
The seed sets the initial weights and the order of the training clips; the test set is the
same for every seed, so the spread is that of training, not of sampling the test set.

- :func:`summarize`: per model, the number of seeds, mean, sample standard deviation and the
  95% Student-t interval of the mean (``mean +- t_{0.975, n-1} * std / sqrt(n)``) of each
  accuracy, and the mean speeds.
- :func:`paired_comparisons`: for a pair of models, the per-seed differences on the seeds both
  have (seed ``s`` of A against seed ``s`` of B); their mean, the paired-t 95% interval and the
  two-sided p-value. A gap is *supported* at 95% when its interval excludes zero. Pairs: every
  model against the frame-level baseline (ResNet-50), then every other pair in the config's order.

With one seed there is no spread: the std and intervals are left empty, never zero. An
accuracy's interval is clipped to [0, 1] (the t interval itself can pass 100%). When every seed
gives the same paired difference (std 0, common on a small test set, where accuracy moves in
steps of one video) the t-test is undefined: the p-value and ``supported`` are left empty and
the table says so, rather than calling a gap seen at two or three seeds certain.

Both write CSVs beside ``results.csv`` (``summary.csv``, ``paired.csv``) and Markdown sections
for ``table.md`` (:func:`markdown_sections`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from p3d_lightning.ablation.results import row_key, to_float, write_results

__all__ = ["ACCURACY_METRICS", "PAIRED_FIELDS", "SUMMARY_FIELDS", "interval", "is_multi_seed", "mean_rows",
           "markdown_sections", "paired_comparisons", "summarize", "write_seed_csvs"]

#: The accuracies summarised across seeds (``results.csv`` columns, fractions in [0, 1]).
ACCURACY_METRICS = ("video_acc1", "clip_acc1", "video_acc5")
#: Speeds and times averaged across seeds (the ones a seed measured).
_MEANS = ("infer_clips_per_s", "infer_frames_per_s", "paper_scale_clips_per_s", "paper_scale_frames_per_s",
          "train_clips_per_s", "train_time_s")
SUMMARY_FIELDS = ["model", "arch", "clip_shape", "n_seeds", "seeds",
                  *[f"{m}_{s}" for m in ACCURACY_METRICS for s in ("mean", "std", "ci95_low", "ci95_high")],
                  *[f"{k}_mean" for k in _MEANS]]
PAIRED_FIELDS = ["model_a", "model_b", "metric", "n_seeds", "seeds", "mean_diff", "std_diff", "ci95_low",
                 "ci95_high", "p_value", "supported"]
BASELINE = "resnet50"


def _t_quantile(n: int, level: float = 0.95) -> float:
    """Two-sided Student-t critical value for ``n`` samples (``n - 1`` degrees of freedom)."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, n - 1))


def interval(values: Sequence[float], level: float = 0.95) -> Tuple[float, Optional[float], Optional[float],
                                                                      Optional[float]]:
    """``(mean, std, low, high)`` of ``values``: sample std (ddof 1) and the Student-t interval of
    the mean; std and interval are ``None`` for fewer than two values."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = math.fsum(values) / n
    if n < 2:
        return mean, None, None, None
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    if std <= 1e-12 * max(1.0, abs(mean)):  # equal values up to rounding: no spread
        std = 0.0
    half = _t_quantile(n, level) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half


def _seed(row: Mapping[str, Any]) -> Optional[int]:
    return row_key(row)[1]


def _by_model(rows: Sequence[Mapping[str, Any]]) -> Dict[str, List[Mapping[str, Any]]]:
    out: Dict[str, List[Mapping[str, Any]]] = {}
    for row in rows:
        out.setdefault(str(row["model"]), []).append(row)
    return out


def is_multi_seed(rows: Sequence[Mapping[str, Any]]) -> bool:
    """True when some model has more than one row (one per seed)."""
    return any(len(group) > 1 for group in _by_model(rows).values())


def summarize(rows: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """One row per model (in the order of first appearance): seeds, and per accuracy of
    :data:`ACCURACY_METRICS` its mean, std and 95% interval; mean speeds (columns:
    :data:`SUMMARY_FIELDS`)."""
    out = []
    for model, group in _by_model(rows).items():
        seeds = sorted(s for s in (_seed(r) for r in group) if s is not None)
        summary: Dict[str, Any] = {"model": model, "arch": group[0].get("arch"), "clip_shape": group[0].get("clip_shape"),
                                   "n_seeds": len(group), "seeds": " ".join(str(s) for s in seeds)}
        for metric in ACCURACY_METRICS:
            values = [v for v in (to_float(r.get(metric)) for r in group) if v is not None]
            mean, std, low, high = interval(values) if values else (None, None, None, None)
            if low is not None:  # an accuracy lies in [0, 1]
                low, high = max(0.0, low), min(1.0, high)
            summary.update({f"{metric}_mean": mean, f"{metric}_std": std, f"{metric}_ci95_low": low,
                            f"{metric}_ci95_high": high})
        for key in _MEANS:
            values = [v for v in (to_float(r.get(key)) for r in group) if v is not None]
            summary[f"{key}_mean"] = math.fsum(values) / len(values) if values else None
        out.append(summary)
    return out


def _pairs(models: Sequence[str]) -> List[Tuple[str, str]]:
    """Each model against the baseline first, then every other pair in order."""
    pairs = [(m, BASELINE) for m in models if m != BASELINE] if BASELINE in models else []
    rest = [m for m in models if m != BASELINE]
    pairs += [(a, b) for i, a in enumerate(rest) for b in rest[i + 1:]]
    return pairs


def paired_comparisons(rows: Sequence[Mapping[str, Any]], metric: str = "video_acc1") -> List[Dict[str, Any]]:
    """Paired differences ``A - B`` of ``metric`` over the seeds both models have (columns:
    :data:`PAIRED_FIELDS`). Pairs with fewer than two shared seeds are left out."""
    from scipy import stats

    groups = _by_model(rows)
    per_seed = {m: {_seed(r): to_float(r.get(metric)) for r in g if _seed(r) is not None} for m, g in groups.items()}
    out = []
    for a, b in _pairs(list(groups)):
        seeds = sorted(s for s in per_seed[a] if s in per_seed[b]
                       and per_seed[a][s] is not None and per_seed[b][s] is not None)
        if len(seeds) < 2:
            continue
        diffs = [per_seed[a][s] - per_seed[b][s] for s in seeds]
        mean, std, low, high = interval(diffs)
        if std == 0:  # the same difference at every seed: the t-test is undefined
            p_value, supported = None, None
        else:
            t_stat = mean / (std / math.sqrt(len(diffs)))
            p_value = float(2 * stats.t.sf(abs(t_stat), len(diffs) - 1))
            supported = bool(low > 0 or high < 0)
        out.append({"model_a": a, "model_b": b, "metric": metric, "n_seeds": len(seeds),
                    "seeds": " ".join(str(s) for s in seeds), "mean_diff": mean, "std_diff": std,
                    "ci95_low": low, "ci95_high": high, "p_value": p_value, "supported": supported})
    return out


def mean_rows(rows: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """One row per model for the Table 1 table and figure: the first seed's row with the
    accuracies and speeds replaced by their means over seeds, plus ``n_seeds`` and, per
    accuracy, ``<metric>_std`` / ``_ci95_low`` / ``_ci95_high``. With one row per model the rows
    come back unchanged (no seed columns added)."""
    if not is_multi_seed(rows):
        return [dict(r) for r in rows]
    groups = _by_model(rows)
    out = []
    for summary in summarize(rows):
        row = dict(groups[summary["model"]][0])
        row["n_seeds"] = summary["n_seeds"]
        for metric in ACCURACY_METRICS:
            row[metric] = summary[f"{metric}_mean"]
            for stat in ("std", "ci95_low", "ci95_high"):
                row[f"{metric}_{stat}"] = summary[f"{metric}_{stat}"]
        for key in _MEANS:
            row[key] = summary[f"{key}_mean"]
        out.append(row)
    return out


def write_seed_csvs(output: Path, rows: Sequence[Mapping[str, Any]]) -> List[Path]:
    """``summary.csv`` and ``paired.csv`` in ``output`` (atomically); written only when some
    model has several seeds. Returns the paths written."""
    if not is_multi_seed(rows):
        return []
    paths = [Path(output) / "summary.csv", Path(output) / "paired.csv"]
    write_results(paths[0], summarize(rows), SUMMARY_FIELDS)
    write_results(paths[1], paired_comparisons(rows), PAIRED_FIELDS)
    return paths


def _pp(value: Optional[float], signed: bool = False) -> str:
    """A fraction as percentage points (``0.979`` -> ``97.9``), ``-`` when missing."""
    if value is None:
        return "-"
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


def _verdict(supported: Optional[bool]) -> str:
    if supported is None:
        return "undetermined (the same difference at every seed)"
    return "yes" if supported else "no (interval includes 0)"


def markdown_sections(rows: Sequence[Mapping[str, Any]], name_of: Any = str) -> str:
    """``table.md``'s across-seeds sections (empty text with one seed per model): per model the
    video and clip top-1 as mean +- std and their 95% intervals; then the paired comparisons of
    video top-1 with which gaps the intervals support. ``name_of`` maps a model to its display name."""
    if not is_multi_seed(rows):
        return ""
    lines = ["", "### Across seeds", "",
             "| Method | Seeds | Video top-1 (mean ± std) | 95% interval | Clip top-1 (mean ± std) | 95% interval |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    summary = summarize(rows)
    for s in summary:
        cells = [name_of(s["model"]), s["seeds"] or str(s["n_seeds"])]
        for metric in ("video_acc1", "clip_acc1"):
            mean, std = s[f"{metric}_mean"], s[f"{metric}_std"]
            cells.append(f"{_pp(mean)} ± {_pp(std)}%" if std is not None else f"{_pp(mean)}%")
            low, high = s[f"{metric}_ci95_low"], s[f"{metric}_ci95_high"]
            cells.append(f"[{_pp(low)}, {_pp(high)}]" if low is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    paired = paired_comparisons(rows)
    if paired:
        lines += ["", "Paired differences of video top-1 (A - B, percentage points, same seeds; "
                  "Student-t 95% interval of the mean difference; two-sided paired t-test):", "",
                  "| A | B | Seeds | Mean diff | 95% interval | p | Supported at 95% |",
                  "| --- | --- | --- | ---: | ---: | ---: | --- |"]
        for p in paired:
            lines.append("| " + " | ".join([
                name_of(p["model_a"]), name_of(p["model_b"]), p["seeds"], _pp(p["mean_diff"], signed=True),
                f"[{_pp(p['ci95_low'], signed=True)}, {_pp(p['ci95_high'], signed=True)}]",
                "-" if p["p_value"] is None else f"{p['p_value']:.3g}", _verdict(p["supported"])]) + " |")
    n = sorted({s["n_seeds"] for s in summary})
    lines += ["", f"Seeds per model: {', '.join(map(str, n))}. The seed sets the initial weights and the "
              "training clips' order; the test set is the same for every seed."]
    return "\n".join(lines) + "\n"
