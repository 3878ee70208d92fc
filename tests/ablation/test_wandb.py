"""A tiny offline ablation read back from its W&B run files: each model's run (job_type, tags,
the whole resolved config, best-value summaries, its checkpoints staged as an artifact) and the
table run (a typed table, the native scatter, the figure, results.csv staged as an artifact)."""

import json
import os

from p3d_lightning.ablation import RESULT_FIELDS, load_ablation_config, read_results, run_ablation
from tests.ablation.test_runner import _write_config
from wandb_files import offline_runs


def test_offline_ablation_run_files_hold_table_scatter_artifacts_tags_and_config(tmp_path, tiny_synthetic_root,
                                                                                  monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_DIR")  # the default layout: W&B files in the output folder
    cfg = load_ablation_config(_write_config(tmp_path, tiny_synthetic_root))
    out = tmp_path / "out"
    rows = run_ablation(cfg, wandb_mode="offline", progress=False)
    assert [r["model"] for r in rows] == ["resnet50", "p3d"]

    runs = {}
    for run in offline_runs(str(out)):
        runs.setdefault(run.job_type, []).append(run)
    assert sorted(runs) == ["ablation-table", "train"] and len(runs["train"]) == 2

    for run, row in zip(sorted(runs["train"], key=lambda r: r.name != "resnet50"), rows):
        name = row["model"]
        assert run.name == name and run.group == "tiny_ablation"
        assert os.path.dirname(os.path.dirname(run.path)) == str(out / "runs" / name)
        assert set(run.tags) == {row["arch"], "ucf101", "ablation", "tiny_ablation"}
        assert run.config["cli"]["trainer"]["max_steps"] == 3  # the trainer config, resolved
        assert run.config["cli"]["model"]["arch"] == row["arch"] and run.config["model"] == name
        assert run.summary["ablation/video_acc1"] == row["video_acc1"]
        assert set(run.summary["val/video_acc1"]) == {"max"} and set(run.summary["test/video_acc1"]) == {"max"}
        [artifact] = run.artifacts
        assert (artifact.name, artifact.type) == (f"tiny_ablation-{name}", "model")
        staged = {e.path: e.local_path for e in artifact.manifest.contents}
        best = [p for p in staged if p.startswith("best-")]
        assert "last.ckpt" in staged and len(best) == 1, staged
        for path in staged.values():  # staged inside the offline run folder, for `wandb sync`
            assert path.startswith(os.path.join(run.path, "artifacts", artifact.name)) and os.path.isfile(path)
        ckpt = out / "runs" / name / "checkpoints"
        assert open(staged["last.ckpt"], "rb").read() == (ckpt / "last.ckpt").read_bytes()
        assert json.loads(artifact.metadata)["train_steps"] == 3

    [table_run] = runs["ablation-table"]
    assert table_run.name == "tiny_ablation-table" and table_run.group == "tiny_ablation"
    assert os.path.dirname(os.path.dirname(table_run.path)) == str(out)
    assert set(table_run.tags) == {"ablation", "tiny_ablation"}
    assert table_run.config["ablation"]["name"] == "tiny_ablation"
    assert table_run.config["ablation"]["speed"]["batch_size"] == 1
    assert set(table_run.config["ablation"]["runs"]) == {"resnet50", "p3d"}

    table = json.load(open(os.path.join(table_run.path, "files", table_run.summary["table1"]["path"])))
    assert table["columns"] == RESULT_FIELDS
    for cells, row in zip(table["data"], read_results(out / "results.csv")):
        cell = dict(zip(RESULT_FIELDS, cells))
        assert isinstance(cell["video_acc1"], float) and isinstance(cell["infer_clips_per_s"], float)
        assert isinstance(cell["params"], int) and cell["paper_scale_clips_per_s"] is None
        assert cell == row  # what results.csv holds, typed
    chart = table_run.config["_wandb"]["visualize"]["video_acc1_vs_infer_clips_per_s"]["panel_config"]
    assert chart["panelDefId"] == "wandb/scatter/v0"
    assert chart["fieldSettings"] == {"x": "infer_clips_per_s", "y": "video_acc1"}
    image = table_run.summary["accuracy_vs_speed"]
    assert image["_type"] == "image-file" and os.path.isfile(os.path.join(table_run.path, "files", image["path"]))
    [results] = [a for a in table_run.artifacts if a.type == "results"]
    assert results.name == "tiny_ablation-table"
    staged = {e.path: e.local_path for e in results.manifest.contents}
    assert set(staged) == {"results.csv", "table.md", "accuracy_vs_speed.png"}
    assert open(staged["results.csv"], "rb").read() == (out / "results.csv").read_bytes()
