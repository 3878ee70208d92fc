"""Seeds and confidence intervals: the statistics against hand computation, the config's seeds,
and a 2-seed tiny ablation whose CSVs and table carry the intervals."""

import csv
import math

import pytest
import yaml

from p3d_lightning.ablation import AblationError, load_ablation_config, read_results, run_ablation
from p3d_lightning.ablation.seeds import interval, markdown_sections, mean_rows, paired_comparisons, summarize

T_975_DF2 = 4.302652729911275  # Student-t 97.5% quantile, 2 degrees of freedom (tables)
T_975_DF1 = 12.706204736174704


def _rows(table):
    """``{model: [acc per seed]}`` -> results rows (seeds 0, 1, ...)."""
    return [{"model": m, "arch": m, "seed": s, "video_acc1": v, "clip_acc1": v / 2, "clip_shape": "3x16x32x32",
             "infer_clips_per_s": 10.0 + s}
            for m, accs in table.items() for s, v in enumerate(accs)]


def test_interval_is_the_student_t_interval_of_the_mean():
    mean, std, low, high = interval([0.90, 0.95, 0.97])
    assert mean == pytest.approx(0.94)
    want_std = math.sqrt(((0.90 - 0.94) ** 2 + (0.95 - 0.94) ** 2 + (0.97 - 0.94) ** 2) / 2)
    assert std == pytest.approx(want_std)
    half = T_975_DF2 * want_std / math.sqrt(3)
    assert (low, high) == (pytest.approx(0.94 - half), pytest.approx(0.94 + half))
    assert interval([0.5]) == (0.5, None, None, None)  # one seed: no spread, never a zero one


def test_paired_comparisons_use_the_per_seed_differences():
    rows = _rows({"resnet50": [0.40, 0.45, 0.42], "p3d_a": [0.95, 0.97, 0.99], "p3d_b": [0.96, 0.95, 1.0]})
    paired = paired_comparisons(rows)
    assert [(p["model_a"], p["model_b"]) for p in paired] == [("p3d_a", "resnet50"), ("p3d_b", "resnet50"),
                                                              ("p3d_a", "p3d_b")]
    a_b = paired[2]
    diffs = [0.95 - 0.96, 0.97 - 0.95, 0.99 - 1.0]
    mean = sum(diffs) / 3
    std = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    assert a_b["mean_diff"] == pytest.approx(mean) and a_b["std_diff"] == pytest.approx(std)
    assert a_b["ci95_low"] == pytest.approx(mean - T_975_DF2 * std / math.sqrt(3))
    t_stat = mean / (std / math.sqrt(3))
    from scipy import stats

    assert a_b["p_value"] == pytest.approx(2 * stats.t.sf(abs(t_stat), 2))
    assert a_b["supported"] is False  # the A-B gap is noise at 3 seeds
    assert paired[0]["supported"] is True and paired[0]["ci95_low"] > 0  # P3D-A beats the frame model
    # every seed's difference equal (up to rounding): no spread, the t-test undefined, not "certain"
    same = paired_comparisons(_rows({"p3d_a": [0.5, 0.6], "p3d_b": [0.4, 0.5]}))[0]
    assert same["std_diff"] == 0 and same["p_value"] is None and same["supported"] is None
    assert "undetermined (the same difference at every seed)" in markdown_sections(
        _rows({"p3d_a": [0.5, 0.6], "p3d_b": [0.4, 0.5]}))


def test_summary_mean_rows_and_markdown_sections():
    rows = _rows({"resnet50": [0.40, 0.50], "p3d": [0.90, 1.0]})
    summary = {s["model"]: s for s in summarize(rows)}
    p3d = summary["p3d"]
    assert p3d["n_seeds"] == 2 and p3d["seeds"] == "0 1"
    std = math.sqrt(2 * 0.05 ** 2)
    assert p3d["video_acc1_mean"] == pytest.approx(0.95) and p3d["video_acc1_std"] == pytest.approx(std)
    assert p3d["video_acc1_ci95_low"] == pytest.approx(0.95 - T_975_DF1 * std / math.sqrt(2))
    assert p3d["video_acc1_ci95_high"] == 1.0  # 0.95 + 12.7 * 0.071 / sqrt(2), clipped to an accuracy
    assert p3d["infer_clips_per_s_mean"] == pytest.approx(10.5)
    assert summary["resnet50"]["video_acc1_ci95_low"] == 0.0  # an accuracy's interval stays in [0, 1]
    means = {r["model"]: r for r in mean_rows(rows)}
    assert means["p3d"]["video_acc1"] == pytest.approx(0.95) and means["p3d"]["n_seeds"] == 2
    text = markdown_sections(rows)
    assert "### Across seeds" in text and "95.0 ± 7.1%" in text and "| p3d | resnet50 | 0 1 | +50.0 |" in text
    single = _rows({"resnet50": [0.4], "p3d": [0.9]})
    assert markdown_sections(single) == "" and mean_rows(single) == single  # one seed: the table as before


@pytest.mark.parametrize("value, message", [("abc", "int N"), ([1, 1], "each seed once"), (0, "at least 1"),
                                            ([0, -1], "non-negative")])
def test_bad_seeds_name_the_file_and_key(tmp_path, value, message):
    path = tmp_path / "ablation.yaml"
    path.write_text(yaml.safe_dump({"runs": {"p3d": "p3d.yaml"}, "seeds": value}))
    with pytest.raises(AblationError, match=message) as err:
        load_ablation_config(path)
    assert str(path) in str(err.value) and "seeds" in str(err.value)
    path.write_text(yaml.safe_dump({"runs": {"p3d": "p3d.yaml"}, "seeds": 3}))
    assert load_ablation_config(path).seeds == [0, 1, 2]


def _experiment(root):
    return {"seed_everything": 7,
            "model": {"arch": "p3d_a", "width_mult": 0.0625, "dropout": 0.0, "lr": 0.05, "lr_schedule": "constant",
                      "partial_bn": False},
            "data": {"dataset": "ucf101", "root": str(root), "num_classes": 4, "clip_len": 8, "resize": [36, 48],
                     "crop_size": 32, "horizontal_flip": False, "num_eval_clips": 1, "batch_size": 4,
                     "num_workers": 0, "progress": False},
            "trainer": {"max_steps": 2, "accelerator": "cpu", "devices": 1, "precision": "32-true",
                        "limit_val_batches": 1, "num_sanity_val_steps": 0, "enable_model_summary": False}}


def test_two_seed_ablation_writes_intervals_and_resumes_per_seed(tmp_path, tiny_synthetic_root, monkeypatch):
    import json
    import os

    import torch

    from p3d_lightning.ablation.seeds import PAIRED_FIELDS, SUMMARY_FIELDS
    from wandb_files import offline_runs

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_DIR")  # W&B files in the output folder

    exp = _experiment(tiny_synthetic_root)
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(exp))
    exp_t16 = {**exp, "data": {**exp["data"], "clip_len": 16}}
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(exp_t16))
    cfg_path = tmp_path / "ablation.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "name": "tiny_seeds", "output_dir": str(tmp_path / "out"), "runs": {"p3d_a_t8": "a.yaml", "p3d_a": "b.yaml"},
        "seeds": [0, 1], "speed": {"batch_size": 1, "warmup": 0, "repeats": 1, "paper_scale": False,
                                   "fast_path": False}}, sort_keys=False))
    cfg = load_ablation_config(cfg_path)
    out = tmp_path / "out"
    rows = run_ablation(cfg, wandb_mode="offline", progress=False, stop_after=3)  # "killed" before the 4th run
    assert [(r["model"], r["seed"]) for r in rows] == [("p3d_a_t8", 0), ("p3d_a_t8", 1), ("p3d_a", 0)]
    first = {(r["model"], r["seed"]): r for r in rows}
    rows = run_ablation(cfg, wandb_mode="offline", progress=False)
    assert [(r["model"], r["seed"]) for r in rows] == [("p3d_a_t8", 0), ("p3d_a_t8", 1), ("p3d_a", 0), ("p3d_a", 1)]
    for r in rows[:3]:
        assert r == first[(r["model"], r["seed"])], "a finished seed was retrained"

    # each seed its own folder and network: the seed, not the config's seed_everything (7), set the weights
    ckpts = {s: torch.load(out / "runs" / "p3d_a" / f"seed{s}" / "checkpoints" / "last.ckpt", weights_only=True)
             for s in (0, 1)}
    key = next(k for k in ckpts[0]["state_dict"] if k.endswith("conv1.weight"))
    assert not torch.equal(ckpts[0]["state_dict"][key], ckpts[1]["state_dict"][key])

    with (out / "summary.csv").open() as f:
        summary = {r["model"]: r for r in csv.DictReader(f)}
    for model in ("p3d_a_t8", "p3d_a"):
        accs = [r["video_acc1"] for r in rows if r["model"] == model]
        mean, std, low, high = interval(accs)
        got = summary[model]
        assert got["n_seeds"] == "2" and got["seeds"] == "0 1"
        for col, want in (("video_acc1_mean", mean), ("video_acc1_std", std), ("video_acc1_ci95_low", low),
                          ("video_acc1_ci95_high", high)):
            assert float(got[col]) == pytest.approx(want, abs=1e-5), (model, col)
    with (out / "paired.csv").open() as f:
        paired = list(csv.DictReader(f))
    assert [(p["model_a"], p["model_b"], p["seeds"]) for p in paired] == [("p3d_a_t8", "p3d_a", "0 1")]
    table = (out / "table.md").read_text()
    assert "### Across seeds" in table and "±" in table and "95% interval" in table
    assert "P3D-A ResNet, 8 frames" in table  # a clip-length row is named as such
    assert (out / "runs" / "p3d_a" / "seed1" / "training_curves.png").is_file()
    # the same architecture at 8 and 16 frames: the clip-length figure
    assert (out / "accuracy_vs_clip_length.png").read_bytes()[:4] == b"\x89PNG"
    assert read_results(out / "results.csv") == rows

    # W&B: one run per (model, seed), named and tagged by seed; the table run holds both tables
    runs = {}
    for run in offline_runs(str(out)):
        runs.setdefault(run.job_type, []).append(run)
    assert sorted(r.name for r in runs["train"]) == ["p3d_a-seed0", "p3d_a-seed1", "p3d_a_t8-seed0", "p3d_a_t8-seed1"]
    for run in runs["train"]:
        seed = int(run.name[-1])
        assert f"seed{seed}" in run.tags and run.config["cli"]["seed_everything"] == seed
        assert run.config["cli"]["data"]["seed"] == seed  # the clips' order and augmentation follow the seed too
        assert f"-{run.name}-" in os.path.basename(run.path)  # the W&B id names model and seed
    [table_run] = runs["ablation-table"]
    assert table_run.config["ablation"]["seeds"] == [0, 1]
    for key, fields in (("seeds_summary", SUMMARY_FIELDS), ("seeds_paired", PAIRED_FIELDS)):
        table = json.load(open(os.path.join(table_run.path, "files", table_run.summary[key]["path"])))
        assert table["columns"] == fields
    summary = json.load(open(os.path.join(table_run.path, "files", table_run.summary["seeds_summary"]["path"])))
    cell = dict(zip(SUMMARY_FIELDS, summary["data"][0]))
    assert cell["model"] == "p3d_a_t8" and cell["n_seeds"] == 2 and isinstance(cell["video_acc1_ci95_low"], float)
