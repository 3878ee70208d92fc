"""Annotation parsers: UCF101, HMDB51, Kinetics-style CSV and a plain class-folder layout.

Each parser returns ``Annotations(classes, train, test, sources)``; labels are 0-based indices
into ``classes``. Records point at the path where the video should be; whether the file exists
and decodes is checked later by the video index (absent files are skipped with a warning).

Layouts (``root`` is the folder holding the class folders):

* UCF101: ``root/<Class>/v_<Class>_gXX_cYY.avi``; ``classInd.txt`` (1-based ids),
  ``trainlist0N.txt`` (path + 1-based label), ``testlist0N.txt`` (path only), N = 1..3, looked
  up in ``annotation_dir``, ``root``, ``root/ucfTrainTestlist``, ``root/../ucfTrainTestlist``.
* HMDB51: ``root/<class>/<video>.avi``; per-class ``<class>_test_split<N>.txt`` with lines
  ``<video> <k>``, k = 1 train, 2 test, 0 unused, in ``annotation_dir``, ``root``,
  ``root/testTrainMulti_7030_splits`` or ``root/../testTrainMulti_7030_splits``. Classes are
  sorted by name.
* Kinetics: ``train.csv`` and ``validate.csv`` (or ``val.csv``) with columns ``label,
  youtube_id, time_start, time_end[, split]`` in ``annotation_dir`` (default ``root``); the
  video of a row is the file named ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` (or
  ``<youtube_id>.<ext>``) anywhere under ``root``. Classes: sorted labels of ``train.csv``.
  The test set is the validation set (Kinetics-400 test labels were not released with it).
* folder: ``root/<class>/<video>``; with ``root/train/<class>/...`` and ``root/val/...``
  (or ``root/test/...``) those folders are the splits, otherwise every 5th video of each
  class (sorted by name, starting with the first) is held out for testing.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = [
    "DATASETS",
    "VIDEO_EXTENSIONS",
    "VideoRecord",
    "Annotations",
    "parse_ucf101",
    "parse_hmdb51",
    "parse_kinetics",
    "parse_folder",
    "load_annotations",
]

DATASETS = ("synthetic", "ucf101", "hmdb51", "kinetics", "folder")
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")


@dataclass(frozen=True)
class VideoRecord:
    """One annotated video: ``video_id`` (path relative to root), absolute ``path``, 0-based ``label``."""

    video_id: str
    path: str
    label: int


@dataclass
class Annotations:
    """Parsed annotations of one dataset split."""

    classes: List[str]
    train: List[VideoRecord]
    test: List[VideoRecord]
    sources: List[str] = field(default_factory=list)  # annotation files that were read


def _require_dir(root: str) -> str:
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"dataset root {root!r} does not exist or is not a directory")
    return root


def _find_file(name: str, dirs: Sequence[Optional[str]], what: str) -> str:
    tried = []
    for d in dirs:
        if d is None:
            continue
        p = os.path.abspath(os.path.join(d, name))
        if os.path.isfile(p):
            return p
        tried.append(p)
    raise FileNotFoundError(f"{what} not found; expected one of: " + ", ".join(tried))


class _Resolver:
    """Maps a relative path to an existing file, tolerating case mismatches (UCF101 has
    ``HandstandPushups/v_HandStandPushups_*``). Unresolvable paths map to ``root/rel``."""

    def __init__(self, root: str):
        self.root = root
        self._listings: Dict[str, Dict[str, str]] = {}

    def _listing(self, d: str) -> Dict[str, str]:
        if d not in self._listings:
            try:
                self._listings[d] = {n.lower(): n for n in os.listdir(d)}
            except OSError:
                self._listings[d] = {}
        return self._listings[d]

    def __call__(self, rel: str) -> str:
        p = os.path.join(self.root, rel)
        if os.path.exists(p):
            return p
        cur = self.root
        for part in rel.replace("\\", "/").split("/"):
            name = self._listing(cur).get(part.lower())
            if name is None:
                return p
            cur = os.path.join(cur, name)
        return cur


def _lines(path: str) -> List[Tuple[int, str]]:
    with open(path, encoding="utf-8", errors="replace") as f:
        return [(i + 1, ln.strip()) for i, ln in enumerate(f) if ln.strip() and not ln.startswith("#")]


def _check_split(split: int, allowed: Sequence[int], dataset: str) -> None:
    if split not in allowed:
        raise ValueError(f"{dataset} split must be one of {list(allowed)}, got {split}")


def parse_ucf101(root: str, split: int = 1, annotation_dir: Optional[str] = None) -> Annotations:
    """UCF101 official splits: ``classInd.txt``, ``trainlist0N.txt``, ``testlist0N.txt``."""
    _check_split(split, (1, 2, 3), "UCF101")
    root = _require_dir(root)
    dirs = [annotation_dir, root, os.path.join(root, "ucfTrainTestlist"),
            os.path.join(os.path.dirname(root), "ucfTrainTestlist")]
    class_file = _find_file("classInd.txt", dirs, "UCF101 class index")
    train_file = _find_file(f"trainlist0{split}.txt", dirs, f"UCF101 split {split} train list")
    test_file = _find_file(f"testlist0{split}.txt", dirs, f"UCF101 split {split} test list")

    ids: Dict[int, str] = {}
    for n, ln in _lines(class_file):
        parts = ln.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ValueError(f"{class_file}:{n}: expected '<1-based id> <ClassName>', got {ln!r}")
        ids[int(parts[0])] = parts[1]
    if sorted(ids) != list(range(1, len(ids) + 1)):
        raise ValueError(f"{class_file}: class ids must be 1..{len(ids)}, got {sorted(ids)}")
    classes = [ids[i] for i in range(1, len(ids) + 1)]
    by_name = {c.lower(): i for i, c in enumerate(classes)}
    resolve = _Resolver(root)

    def read_list(path: str, labelled: bool) -> List[VideoRecord]:
        out = []
        for n, ln in _lines(path):
            parts = ln.split()
            rel = parts[0]
            cls = rel.replace("\\", "/").split("/")[0].lower()
            if labelled and len(parts) >= 2:
                if not parts[1].isdigit() or not 1 <= int(parts[1]) <= len(classes):
                    raise ValueError(f"{path}:{n}: label must be 1..{len(classes)}, got {parts[1]!r}")
                label = int(parts[1]) - 1
            elif cls in by_name:
                label = by_name[cls]
            else:
                raise ValueError(f"{path}:{n}: class folder {cls!r} of {rel!r} is not in {class_file}")
            out.append(VideoRecord(rel, resolve(rel), label))
        return out

    return Annotations(classes, read_list(train_file, True), read_list(test_file, False),
                       [class_file, train_file, test_file])


def parse_hmdb51(root: str, split: int = 1, annotation_dir: Optional[str] = None) -> Annotations:
    """HMDB51 per-class split files ``<class>_test_split<N>.txt`` (1 = train, 2 = test)."""
    _check_split(split, (1, 2, 3), "HMDB51")
    root = _require_dir(root)
    dirs = [annotation_dir, root, os.path.join(root, "testTrainMulti_7030_splits"),
            os.path.join(os.path.dirname(root), "testTrainMulti_7030_splits")]
    suffix = f"_test_split{split}.txt"
    split_dir, files = None, []
    for d in dirs:
        if d is not None and os.path.isdir(d):
            files = sorted(f for f in os.listdir(d) if f.endswith(suffix))
            if files:
                split_dir = d
                break
    if not files:
        tried = [os.path.join(os.path.abspath(d), f"<class>{suffix}") for d in dirs if d is not None]
        raise FileNotFoundError("HMDB51 split files not found; expected " + ", ".join(tried))
    classes = [f[: -len(suffix)] for f in files]
    resolve = _Resolver(root)
    train, test, sources = [], [], []
    for label, (cls, fname) in enumerate(zip(classes, files)):
        path = os.path.join(split_dir, fname)
        sources.append(path)
        for n, ln in _lines(path):
            parts = ln.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise ValueError(f"{path}:{n}: expected '<video> <0|1|2>', got {ln!r}")
            rel = f"{cls}/{parts[0]}"
            if parts[1] == "1":
                train.append(VideoRecord(rel, resolve(rel), label))
            elif parts[1] == "2":
                test.append(VideoRecord(rel, resolve(rel), label))
    return Annotations(classes, train, test, sources)


def _video_files(root: str) -> Dict[str, str]:
    """stem -> path for every video file under root (first found wins)."""
    out: Dict[str, str] = {}
    for d, subdirs, names in os.walk(root):
        subdirs.sort()
        for n in sorted(names):
            stem, ext = os.path.splitext(n)
            if ext.lower() in VIDEO_EXTENSIONS:
                out.setdefault(stem, os.path.join(d, n))
    return out


def parse_kinetics(root: str, annotation_dir: Optional[str] = None) -> Annotations:
    """Kinetics-style CSVs (``label,youtube_id,time_start,time_end[,split]``)."""
    root = _require_dir(root)
    adir = annotation_dir or root
    train_csv = _find_file("train.csv", [adir], "Kinetics train CSV")
    try:
        val_csv = _find_file("validate.csv", [adir], "Kinetics validation CSV")
    except FileNotFoundError:
        val_csv = _find_file("val.csv", [adir], "Kinetics validation CSV (validate.csv or val.csv)")

    def rows(path: str) -> List[Tuple[int, dict]]:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            need = {"label", "youtube_id", "time_start", "time_end"}
            missing = need - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"{path}: missing CSV column(s) {sorted(missing)}; header is {reader.fieldnames}")
            return [(i + 2, r) for i, r in enumerate(reader)]

    train_rows, val_rows = rows(train_csv), rows(val_csv)
    classes = sorted({r["label"] for _, r in train_rows})
    index = {c: i for i, c in enumerate(classes)}
    files = _video_files(root)

    def records(path: str, rs: List[Tuple[int, dict]], split_dir: str) -> List[VideoRecord]:
        out = []
        for n, r in rs:
            if r["label"] not in index:
                raise ValueError(f"{path}:{n}: label {r['label']!r} does not occur in {train_csv}")
            try:
                key = f"{r['youtube_id']}_{int(float(r['time_start'])):06d}_{int(float(r['time_end'])):06d}"
            except ValueError:
                raise ValueError(f"{path}:{n}: time_start/time_end must be numbers, got "
                                 f"{r['time_start']!r}, {r['time_end']!r}") from None
            p = files.get(key) or files.get(r["youtube_id"])
            if p is None:  # expected location; the index reports it as missing
                p = os.path.join(root, split_dir, r["label"], key + ".mp4")
            out.append(VideoRecord(os.path.relpath(p, root), p, index[r["label"]]))
        return out

    return Annotations(classes, records(train_csv, train_rows, "train"),
                       records(val_csv, val_rows, "val"), [train_csv, val_csv])


def _class_videos(d: str) -> Dict[str, List[str]]:
    out = {}
    for c in sorted(os.listdir(d)):
        cd = os.path.join(d, c)
        if os.path.isdir(cd) and not c.startswith("."):
            out[c] = sorted(f for f in os.listdir(cd) if os.path.splitext(f)[1].lower() in VIDEO_EXTENSIONS)
    return out


def parse_folder(root: str) -> Annotations:
    """``root/<class>/<video>``, or ``root/{train,val|test}/<class>/<video>``."""
    root = _require_dir(root)
    eval_dir = next((d for d in ("val", "test") if os.path.isdir(os.path.join(root, d))), None)
    if os.path.isdir(os.path.join(root, "train")) and eval_dir:
        tr, te = _class_videos(os.path.join(root, "train")), _class_videos(os.path.join(root, eval_dir))
        classes = sorted(set(tr) | set(te))
        train = [VideoRecord(f"train/{c}/{v}", os.path.join(root, "train", c, v), classes.index(c))
                 for c in tr for v in tr[c]]
        test = [VideoRecord(f"{eval_dir}/{c}/{v}", os.path.join(root, eval_dir, c, v), classes.index(c))
                for c in te for v in te[c]]
    else:
        cv = _class_videos(root)
        classes = sorted(cv)
        train, test = [], []
        for label, c in enumerate(classes):
            for i, v in enumerate(cv[c]):
                (test if i % 5 == 0 else train).append(VideoRecord(f"{c}/{v}", os.path.join(root, c, v), label))
    if not classes:
        raise FileNotFoundError(f"no class folders found under {root!r}; expected {root}/<class>/<video>")
    return Annotations(classes, train, test, [])


def load_annotations(dataset: str, root: str, split: int = 1, annotation_dir: Optional[str] = None) -> Annotations:
    """Dispatch on ``dataset`` (``"synthetic"`` uses the UCF101 layout)."""
    if dataset in ("ucf101", "synthetic"):
        return parse_ucf101(root, split, annotation_dir)
    if dataset == "hmdb51":
        return parse_hmdb51(root, split, annotation_dir)
    if dataset == "kinetics":
        return parse_kinetics(root, annotation_dir)
    if dataset == "folder":
        return parse_folder(root)
    raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
