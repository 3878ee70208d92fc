"""Read an offline W&B run back from its files, as ``wandb sync`` would upload it.

wandb 0.31 writes an offline run's config, tags, summary, metric definitions and artifacts only
into the run's transaction log (``offline-run-*/run-<id>.wandb``; ``files/`` holds the media,
e.g. ``files/media/table/*.table.json``). The log is LevelDB's log format (32 KiB blocks of
records, each with a 7-byte header: CRC, length, type) after W&B's own 7-byte file header
(``:W&B``, magic, version); every record is a ``wandb.proto.wandb_internal_pb2.Record``. The
SDK's own reader of that format left the Python package with the Go core, so it is read here.
"""

from __future__ import annotations

import glob
import json
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List

_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def records(path: str) -> list:
    """Every record of a ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = open(path, "rb").read()
    assert data[:4] == b":W&B", f"{path}: not a W&B transaction log"
    out, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:  # zero padding up to the block's end
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (_FULL, _FIRST) else pending + chunk
        if kind in (_FULL, _LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def _merge(into: Dict[str, Any], items) -> None:
    """Apply config/summary/history items (``key``, or ``nested_key`` = a path) to ``into``."""
    for item in items:
        path = [item.key] if item.key else list(item.nested_key)
        node = into
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = json.loads(item.value_json)


@dataclass
class OfflineRun:
    """What an offline run holds: its folder, the run record's fields and everything logged."""

    path: str
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: List[str] = field(default_factory=list)
    config: Dict[str, Any] = field(default_factory=dict)
    summary: Dict[str, Any] = field(default_factory=dict)
    metrics: Dict[str, Any] = field(default_factory=dict)  # name -> the MetricRecord
    history: List[Dict[str, Any]] = field(default_factory=list)
    artifacts: List[Any] = field(default_factory=list)  # ArtifactRecords


def read_offline_run(run_dir: str, timeout_s: float = 20.0) -> OfflineRun:
    """Parse ``run_dir/run-*.wandb`` once it is complete (its exit record written: a W&B service
    shared with earlier runs of the process may still be flushing it)."""
    [path] = glob.glob(os.path.join(run_dir, "*.wandb"))
    deadline = time.monotonic() + timeout_s
    while True:
        recs = records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in recs) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    run = OfflineRun(path=run_dir)
    for r in recs:
        kind = r.WhichOneof("record_type")
        if kind == "run":
            run.name, run.group, run.job_type = r.run.display_name, r.run.run_group, r.run.job_type
            run.tags = list(r.run.tags)
            _merge(run.config, r.run.config.update)
        elif kind == "config":
            _merge(run.config, r.config.update)
        elif kind == "summary":
            _merge(run.summary, r.summary.update)
        elif kind == "metric":
            run.metrics[r.metric.name or r.metric.glob_name] = r.metric
        elif kind == "history":
            run.history.append({})
            _merge(run.history[-1], r.history.item)
        elif kind == "artifact":
            run.artifacts.append(r.artifact)
    return run


def offline_runs(folder: str) -> List[OfflineRun]:
    """Every offline run under ``folder`` (any depth), parsed."""
    dirs = sorted(glob.glob(os.path.join(folder, "**", "offline-run-*"), recursive=True))
    return [read_offline_run(d) for d in dirs if os.path.isdir(d)]
