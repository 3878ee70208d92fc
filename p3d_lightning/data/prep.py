"""``p3d-prep SRC DST``: a one-time, resumable re-encoding of a dataset tree for fast random clips.

Every video under ``SRC`` is re-encoded into ``DST`` under the same relative path (same file
name, so split files, CSVs and class folders still name it): short side ``--short-side``
(default 182, the P3D configs' ``resize: [182, 242]``; never upscaled), a keyframe exactly every
``--gop`` frames (default 8, chosen by ``p3d-bench-decode``: see docs/data.md), no B-frames,
video only. The default codec is MPEG-4 part 2 (Xvid-like, ``--quality`` = qscale 2-31): at
these sizes it opens and decodes faster than H.264 (``--codec libx264``: ``--quality`` = CRF,
``tune=fastdecode``; smaller files, .mp4/.mkv/.mov only). Frame ``i`` of a prepared file is
frame ``i`` of its source as ``read_frames`` indexes it; point ``root`` (or ``data.root``) at
``DST`` and nothing else changes. Other files (split lists, CSVs, ``classInd.txt``) are copied.

Each output is verified before it is kept: it must open, decode its first frame and have the
source's frame count and fps (so the same duration). A mismatch is listed and its output
deleted, never silently kept. Sources that fail the prescan probe are reported as
``p3d-prescan`` reports them (``BAD  <path>: <reason>``) and listed, with outputs that failed
verification, in ``DST/p3d_quarantine.txt``, which the datamodule honours.

``DST/p3d_prep_manifest.json`` records per file the source path, size, mtime, frame count, fps
and size, the settings and the output's size; it is rewritten as the run goes, so an
interrupted run resumes: a re-run skips every file whose source (size, mtime), settings and
output are unchanged. At the end the disk cost per hour of video is printed for the source and
the prepared tree.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Tuple

from tqdm.auto import tqdm

from .annotations import VIDEO_EXTENSIONS
from .container import DecodeError, probe_video
from .encode import transcode_video
from .prescan import check_video
from .quarantine import QUARANTINE_FILENAME, write_quarantine

__all__ = ["MANIFEST_FILENAME", "DEFAULT_QUALITY", "PrepSettings", "prepare_video", "prepare_tree"]

MANIFEST_FILENAME = "p3d_prep_manifest.json"
_MANIFEST_FORMAT = 1
#: ``quality`` when not given: mpeg4 qscale 3, libx264 CRF 18 (see docs/data.md for the measurements)
DEFAULT_QUALITY = {"mpeg4": 3, "libx264": 18}


@dataclass(frozen=True)
class PrepSettings:
    """How videos are re-encoded (recorded in the manifest; a change re-encodes)."""

    short_side: Optional[int] = 182
    gop: int = 8
    codec: str = "mpeg4"
    quality: int = DEFAULT_QUALITY["mpeg4"]  # mpeg4: qscale (2 best .. 31); libx264: CRF (0 lossless .. 51)

    def check(self) -> "PrepSettings":
        """``self`` if every field is valid, else ``ValueError`` naming the ``p3d-prep`` option."""
        if self.codec not in ("mpeg4", "libx264"):
            raise ValueError(f"p3d-prep: --codec must be 'mpeg4' or 'libx264', got {self.codec!r}")
        if self.gop < 1:
            raise ValueError(f"p3d-prep: --gop must be >= 1, got {self.gop}")
        if self.short_side is not None and self.short_side < 2:
            raise ValueError(f"p3d-prep: --short-side must be >= 2 (or 0 to keep the size), got {self.short_side}")
        lo, hi = (2, 31) if self.codec == "mpeg4" else (0, 51)
        if not lo <= self.quality <= hi:
            raise ValueError(f"p3d-prep: --quality for {self.codec} must be in [{lo}, {hi}], got {self.quality}")
        return self


def _stamp(path: str) -> Tuple[int, float]:
    st = os.stat(path)
    return st.st_size, st.st_mtime


def prepare_video(src: str, dst: str, settings: PrepSettings) -> dict:
    """Re-encode and verify one video; returns its manifest entry (``status`` "ok", "bad_source"
    or "mismatch", with ``reason`` for the last two). Never raises for a bad video."""
    size, mtime = _stamp(src)
    entry: dict = {"source": {"path": os.path.abspath(src), "size": size, "mtime": mtime},
                   "settings": asdict(settings)}
    reason = check_video(src)  # exactly what p3d-prescan reports
    if reason is not None:
        entry.update(status="bad_source", reason=reason)
        return entry
    meta = probe_video(src)
    entry["source"].update(frames=meta.num_frames, fps=meta.fps, width=meta.width, height=meta.height)
    if settings.codec == "libx264" and os.path.splitext(dst)[1].lower() == ".avi":
        entry.update(status="mismatch", reason="--codec libx264 cannot keep frame timestamps in an .avi; "
                                               "use --codec mpeg4 for .avi files")
        return entry
    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
    base, ext = os.path.splitext(dst)
    tmp = f"{base}.p3d-prep-{os.getpid()}{ext}"
    t0 = time.perf_counter()
    try:
        res = transcode_video(src, tmp, settings.short_side, codec=settings.codec, gop_size=settings.gop,
                              quality=settings.quality)
        out = probe_video(tmp, validate=True)
    except DecodeError as e:
        _remove(tmp)
        entry.update(status="mismatch" if e.path == tmp else "bad_source", reason=e.reason)
        return entry
    entry["seconds"] = round(time.perf_counter() - t0, 3)
    entry["output"] = {"size": os.path.getsize(tmp), "frames": out.num_frames, "fps": out.fps,
                       "width": out.width, "height": out.height, "filled_frames": res.filled,
                       "dropped_frames": res.dropped}
    problems = []
    if out.num_frames != meta.num_frames:
        problems.append(f"{out.num_frames} frames instead of the source's {meta.num_frames}")
    if abs(out.fps - meta.fps) > 1e-3 * meta.fps:
        problems.append(f"{out.fps:.4f} fps instead of the source's {meta.fps:.4f}")
    if problems:
        _remove(tmp)
        entry.update(status="mismatch", reason="prepared copy has " + " and ".join(problems) + "; not kept")
        return entry
    os.replace(tmp, dst)
    entry["status"] = "ok"
    return entry


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _prepare_job(job: Tuple[str, str, str, PrepSettings]) -> Tuple[str, dict]:
    rel, src, dst, settings = job
    try:
        return rel, prepare_video(src, dst, settings)
    except Exception as e:  # a worker never takes the run down; the file is listed instead
        return rel, {"source": {"path": os.path.abspath(src)}, "settings": asdict(settings),
                     "status": "mismatch", "reason": f"{type(e).__name__}: {e}"}


def _load_manifest(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}  # unreadable manifest: prepare everything again
    return data.get("files", {}) if data.get("format") == _MANIFEST_FORMAT else {}


def _save_manifest(path: str, src_root: str, settings: PrepSettings, files: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"format": _MANIFEST_FORMAT, "source_root": os.path.abspath(src_root),
                   "settings": asdict(settings), "files": files}, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _unchanged(entry: Optional[dict], src: str, dst: str, settings: PrepSettings) -> bool:
    if not entry or entry.get("settings") != asdict(settings):
        return False
    size, mtime = _stamp(src)
    s = entry.get("source", {})
    if s.get("size") != size or s.get("mtime") != mtime:
        return False
    if entry.get("status") == "ok":
        return os.path.isfile(dst) and os.path.getsize(dst) == entry.get("output", {}).get("size")
    return entry.get("status") == "bad_source"  # still the same bad file: report it again, no retry


def _walk(src_root: str, dst_root: str) -> Tuple[List[str], List[str]]:
    videos, others = [], []
    dst_abs = os.path.abspath(dst_root)
    for d, subdirs, names in os.walk(src_root):
        subdirs[:] = sorted(s for s in subdirs if os.path.abspath(os.path.join(d, s)) != dst_abs)
        for n in sorted(names):
            rel = os.path.relpath(os.path.join(d, n), src_root)
            if os.path.splitext(n)[1].lower() in VIDEO_EXTENSIONS and os.path.isfile(os.path.join(d, n)):
                videos.append(rel)
            elif not n.startswith(".p3d") and n not in (MANIFEST_FILENAME, QUARANTINE_FILENAME):
                others.append(rel)
    return videos, others


def prepare_tree(src_root: str, dst_root: str, settings: PrepSettings = PrepSettings(), workers: int = 1,
                 progress: bool = True, copy_other: bool = True, force: bool = False,
                 save_every_s: float = 2.0) -> dict:
    """Prepare every video under ``src_root`` into ``dst_root`` (see the module docstring).

    Returns a summary: ``prepared``, ``skipped`` (unchanged), ``bad`` and ``mismatched`` lists
    of relative paths, ``reasons`` ``{rel: reason}``, ``hours`` of video, ``source_bytes`` and
    ``prepared_bytes`` of the good files, and the manifest / quarantine paths.
    """
    settings = settings.check()
    if not os.path.isdir(src_root):
        raise FileNotFoundError(f"p3d-prep: source root {os.path.abspath(src_root)!r} does not exist")
    if os.path.abspath(src_root) == os.path.abspath(dst_root):
        raise ValueError(f"p3d-prep: the prepared tree must differ from the source ({os.path.abspath(src_root)!r})")
    os.makedirs(dst_root, exist_ok=True)
    manifest_path = os.path.join(dst_root, MANIFEST_FILENAME)
    old = {} if force else _load_manifest(manifest_path)
    videos, others = _walk(src_root, dst_root)
    files: Dict[str, dict] = {}
    jobs, skipped = [], []
    for rel in videos:
        src, dst = os.path.join(src_root, rel), os.path.join(dst_root, rel)
        if _unchanged(old.get(rel), src, dst, settings):
            files[rel] = old[rel]
            skipped.append(rel)
        else:
            jobs.append((rel, src, dst, settings))
    if copy_other:
        for rel in others:
            src, dst = os.path.join(src_root, rel), os.path.join(dst_root, rel)
            if not os.path.isfile(dst) or _stamp(dst) != _stamp(src):
                os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
                shutil.copy2(src, dst)
    last_save = time.monotonic()
    bar = tqdm(total=len(jobs), desc="preparing videos", unit="video", disable=not progress)
    pool = ProcessPoolExecutor(workers) if workers > 1 and len(jobs) > 1 else None
    try:
        results = pool.map(_prepare_job, jobs, chunksize=1) if pool else map(_prepare_job, jobs)
        for rel, entry in results:
            files[rel] = entry
            bar.update(1)
            if time.monotonic() - last_save > save_every_s:  # a killed run keeps finished files
                _save_manifest(manifest_path, src_root, settings, files)
                last_save = time.monotonic()
    finally:
        if pool is not None:
            pool.shutdown()
        bar.close()
        _save_manifest(manifest_path, src_root, settings, {**{k: v for k, v in old.items()
                                                              if k not in files and k in videos}, **files})
    status = {rel: e.get("status") for rel, e in files.items()}
    bad = sorted(r for r, s in status.items() if s == "bad_source")
    mismatched = sorted(r for r, s in status.items() if s == "mismatch")
    good = [files[r] for r, s in status.items() if s == "ok"]
    quarantine = os.path.join(dst_root, QUARANTINE_FILENAME)
    write_quarantine(quarantine, [(os.path.abspath(os.path.join(dst_root, r)), files[r]["reason"])
                                  for r in bad + mismatched], dst_root)
    return {
        "prepared": sorted(r for r, *_ in jobs if status.get(r) == "ok"),
        "skipped": skipped,
        "bad": bad,
        "mismatched": mismatched,
        "reasons": {r: files[r]["reason"] for r in bad + mismatched},
        "hours": sum(e["source"]["frames"] / e["source"]["fps"] for e in good) / 3600,
        "source_bytes": sum(e["source"]["size"] for e in good),
        "prepared_bytes": sum(e["output"]["size"] for e in good),
        "manifest": manifest_path,
        "quarantine": quarantine,
    }
