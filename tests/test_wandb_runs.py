"""What the project writes into W&B runs besides metrics, read back from the offline run files:
summaries, artifacts staged in the run folder, the table run (typed table, scatter, tags, config)."""

import base64
import glob
import hashlib
import json
import os

from p3d_lightning import loggers as L
from p3d_lightning import wandb_runs as W
from wandb_files import read_offline_run


def _offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_DIR")  # the default layout: W&B files under the save_dir given
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def _md5_b64(path):
    return base64.b64encode(hashlib.md5(open(path, "rb").read()).digest()).decode()


def test_wandb_helpers_do_nothing_for_a_disabled_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    loggers = L.make_loggers(save_dir=str(tmp_path), name="run", mode="auto")
    assert W.wandb_dir(loggers) == "" and W.wandb_dir(loggers[:1]) == ""
    W.log_summary_to_wandb(loggers, {"model": "p3d", "params": 1}, prefix="ablation/")
    W.log_artifact_to_wandb(loggers, "m", "model", {"x": tmp_path / "none"})
    W.log_table_to_wandb(tmp_path / "t", project="p", group="g", mode="auto", name="g-table",
                         columns=["model"], data=[["p3d"]])
    assert not (tmp_path / "t").exists()
    W.finish_wandb()
    W.finish_wandb()  # no run: nothing to finish


def test_wandb_summary_and_table_of_an_offline_run(tmp_path, monkeypatch):
    _offline(monkeypatch)
    wb = L.WandbLogger(project="p3d-test", name="offline", save_dir=str(tmp_path / "run"), mode="offline")
    try:
        W.log_summary_to_wandb([wb], {"model": "p3d", "video_acc1": 0.5, "skipped": None}, prefix="ablation/")
        assert W.wandb_dir([wb]).startswith(str(tmp_path / "run" / "wandb"))
    finally:
        W.finish_wandb()
    W.log_table_to_wandb(tmp_path / "table", project="p3d-test", group="g", mode="offline", name="g-table",
                         columns=["model", "video_acc1"], data=[["p3d", "0.5"]], summary={"results_csv": "r.csv"})
    [run] = glob.glob(str(tmp_path / "run" / "wandb" / "offline-run-*"))
    assert len(glob.glob(str(tmp_path / "table" / "wandb" / "offline-run-*"))) == 1
    summary = read_offline_run(run).summary
    assert summary["ablation/model"] == "p3d" and summary["ablation/video_acc1"] == 0.5
    assert "ablation/skipped" not in summary


def test_offline_artifact_is_staged_in_the_run_folder(tmp_path, monkeypatch):
    """The artifact's files are copied into the offline run's folder when logged (W&B would stage
    them in ~/.local/share/wandb); the manifest points there, so `wandb sync` uploads that copy
    even after the original changes."""
    _offline(monkeypatch)
    last, best = tmp_path / "last.ckpt", tmp_path / "best-step2.ckpt"
    last.write_bytes(b"last weights")
    best.write_bytes(b"best weights")
    wb = L.WandbLogger(project="p3d-test", name="art", save_dir=str(tmp_path / "run"), mode="offline")
    try:
        W.log_artifact_to_wandb([wb], "abl/p3d a", "model", {"last.ckpt": last, best.name: best,
                                                              "missing.ckpt": tmp_path / "missing.ckpt"},
                                metadata={"video_acc1": 0.5, "none": None})
    finally:
        W.finish_wandb()
    last.write_bytes(b"overwritten later")
    [run_dir] = glob.glob(str(tmp_path / "run" / "wandb" / "offline-run-*"))
    [artifact] = read_offline_run(run_dir).artifacts
    assert artifact.name == "abl-p3d-a" and artifact.type == "model"  # a legal artifact name
    assert list(artifact.aliases) == ["latest"] and json.loads(artifact.metadata) == {"video_acc1": 0.5}
    entries = {e.path: e for e in artifact.manifest.contents}
    assert set(entries) == {"last.ckpt", "best-step2.ckpt"}
    for name, entry in entries.items():
        assert entry.local_path == os.path.join(run_dir, "artifacts", "abl-p3d-a", name)
        assert entry.digest == _md5_b64(entry.local_path)
    assert open(entries["last.ckpt"].local_path, "rb").read() == b"last weights"


def test_table_run_holds_numbers_a_scatter_tags_config_and_the_results_artifact(tmp_path, monkeypatch):
    _offline(monkeypatch)
    csv, png = tmp_path / "results.csv", tmp_path / "plot.png"
    csv.write_text("model,video_acc1\np3d,0.5\n")
    png.write_bytes(b"\x89PNG\r\n\x1a\n")  # staged as a file, not read as an image
    W.log_table_to_wandb(tmp_path / "out", project="p3d-test", group="abl", mode="offline", name="abl-table",
                         job_type="ablation-table", columns=["model", "params", "video_acc1", "infer_clips_per_s"],
                         data=[["p3d", 100, 0.5, 12.5], ["resnet50", 200, 0.25, None]],
                         scatter=("infer_clips_per_s", "video_acc1", "top-1 vs clips/s"),
                         tags=["ablation", "abl"], config={"ablation": {"name": "abl", "speed": {"batch_size": 1}}},
                         files={"results.csv": csv, "plot.png": png})
    [run_dir] = glob.glob(str(tmp_path / "out" / "wandb" / "offline-run-*"))
    run = read_offline_run(run_dir)
    assert (run.name, run.group, run.job_type, run.tags) == ("abl-table", "abl", "ablation-table", ["ablation", "abl"])
    assert run.config["ablation"] == {"name": "abl", "speed": {"batch_size": 1}}
    table = json.load(open(os.path.join(run_dir, "files", run.summary["table1"]["path"])))
    assert table["columns"] == ["model", "params", "video_acc1", "infer_clips_per_s"]
    assert table["data"] == [["p3d", 100, 0.5, 12.5], ["resnet50", 200, 0.25, None]]  # numbers, not text
    chart = run.config["_wandb"]["visualize"]["video_acc1_vs_infer_clips_per_s"]["panel_config"]
    assert chart["panelDefId"] == "wandb/scatter/v0"
    assert chart["fieldSettings"] == {"x": "infer_clips_per_s", "y": "video_acc1"}
    assert run.summary["video_acc1_vs_infer_clips_per_s_table"]["_type"] == "table-file"
    [artifact] = [a for a in run.artifacts if a.type == "results"]
    assert artifact.name == "abl-table"
    assert {e.path for e in artifact.manifest.contents} == {"results.csv", "plot.png"}
    assert all(e.local_path.startswith(run_dir) for e in artifact.manifest.contents)
    # the table's own artifact (W&B's copy of the table) is staged in the run folder too
    [table_artifact] = [a for a in run.artifacts if a.type == "run_table"]
    assert all(e.local_path.startswith(os.path.join(run_dir, "artifacts", "staging"))
               for e in table_artifact.manifest.contents)
    assert "WANDB_DATA_DIR" not in os.environ


def test_wandb_dir_is_honoured_when_set(tmp_path, monkeypatch):
    """WANDB_DIR, when set, receives the W&B files (it would be overridden by save_dir otherwise)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    wb = L.WandbLogger(project="p3d-test", name="env", save_dir=str(tmp_path / "run"), mode="offline")
    try:
        assert W.wandb_dir([wb]).startswith(str(tmp_path / "wandb_dir" / "wandb" / "offline-run-"))
    finally:
        W.finish_wandb()
    W.log_table_to_wandb(tmp_path / "out", project="p3d-test", group="g", mode="offline", name="g-table",
                         columns=["model"], data=[["p3d"]])
    assert len(glob.glob(str(tmp_path / "wandb_dir" / "wandb" / "offline-run-*"))) == 2
    assert not (tmp_path / "run" / "wandb").exists() and not (tmp_path / "out").exists()
    monkeypatch.delenv("WANDB_DIR")
    assert L.wandb_root(tmp_path / "run") == str(tmp_path / "run")
