"""Every notebook in ``notebooks/`` runs top to bottom, headless, on results of a tiny real run.

One session fixture makes the results the notebooks read, with the project's own tools: a tiny
synthetic dataset, the ablation runner on two tiny models (a few steps each), per-clip test
predictions from their checkpoints and ``p3d predict`` features. Each notebook is then executed
with nbclient in a kernel of this interpreter; any cell error fails the test. Nothing is
downloaded and no result file is committed.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
NOTEBOOK_NAMES = ["01_table1_ablation", "02_model_zoo", "03_table2_protocol", "04_representation"]
MODELS = {"resnet50": ("resnet_tiny", 1, 3), "p3d": ("p3d_tiny", 16, 2)}  # Table 1 row: (arch, clip_len, eval clips)
KERNEL_NAME = "p3d-notebook-test"


def _run_config(root: Path, arch: str, clip_len: int, eval_clips: int) -> dict:
    return {
        "seed_everything": 0,
        "model": {"arch": arch, "lr": 0.01, "dropout": 0.0, "channels_last": False},
        "data": {
            "dataset": "synthetic",
            "root": str(root),
            "num_classes": 4,
            "clip_len": clip_len,
            "resize": [40, 52],
            "crop_size": 32,
            "num_eval_clips": eval_clips,
            "batch_size": 4,
            "num_workers": 0,
            "progress": False,
        },
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "precision": "32-true",
            "max_steps": 3,
            "num_sanity_val_steps": 0,
            "log_every_n_steps": 1,
            "enable_model_summary": False,
            "enable_progress_bar": False,
            "logger": False,
        },
    }


@pytest.fixture(scope="session")
def tiny_results(tmp_path_factory, tiny_synthetic_root):
    """Ablation results, clip predictions and features of two tiny models, made by real runs."""
    import yaml

    base = tmp_path_factory.mktemp("notebook_results")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "disabled")
        mp.setenv("WANDB_DIR", str(base / "wandb"))
        mp.setenv("WANDB_SILENT", "true")
        from p3d_lightning.ablation import AblationConfig, run_ablation
        from p3d_lightning.commands.p3d import main as p3d_main
        from p3d_lightning.commands.report import main as report_main

        configs = {}
        for name, (arch, clip_len, eval_clips) in MODELS.items():
            configs[name] = base / f"{name}.yaml"
            configs[name].write_text(yaml.safe_dump(_run_config(Path(tiny_synthetic_root), arch, clip_len, eval_clips)))
        ablation = AblationConfig(
            name="notebook_test",
            runs=dict(configs),
            output_dir=base / "ablation",
            speed={"paper_scale": False, "fast_path": False, "batch_size": 2, "warmup": 0, "repeats": 1},
        )
        run_ablation(ablation, wandb_mode="disabled", progress=False)
        # a clip-length ablation with two seeds: the tiny P3D at 8 and 16 frames
        clip_configs = {}
        for frames in (8, 16):
            clip_configs[f"p3d_t{frames}"] = base / f"p3d_t{frames}.yaml"
            clip_configs[f"p3d_t{frames}"].write_text(yaml.safe_dump(_run_config(Path(tiny_synthetic_root), "p3d_tiny",
                                                                                 frames, 1)))
        clip_length = AblationConfig(name="notebook_clip_length", runs=clip_configs, output_dir=base / "clip_length",
                                     seeds=[0, 1], speed={"paper_scale": False, "fast_path": False, "batch_size": 2,
                                                          "warmup": 0, "repeats": 1})
        run_ablation(clip_length, wandb_mode="disabled", progress=False)

        predictions, features = {}, {}
        for name in MODELS:
            ckpt = base / "ablation" / "runs" / name / "checkpoints" / "last.ckpt"
            predictions[name] = base / "predictions" / f"{name}.pt"
            # the documented command: p3d-report clip-predictions ...
            assert report_main(
                ["clip-predictions", "--config", str(configs[name]), "--ckpt", str(ckpt), "--out", str(predictions[name])]
            ) == 0
            p3d_main(
                [
                    "predict",
                    "--config", str(configs[name]),
                    "--ckpt_path", str(ckpt),
                    "--features.output_dir", str(base / "features" / name),
                    "--trainer.default_root_dir", str(base / "predict_logs" / name),
                ]
            )
            features[name] = base / "features" / name / "features.pt"
    return {"base": base, "ablation": base / "ablation", "clip_length": base / "clip_length",
            "predictions": predictions, "features": features}


@pytest.fixture(scope="session")
def kernel_env(tmp_path_factory):
    """A kernel spec for *this* interpreter (in a temporary Jupyter path) and the kernel's env."""
    jupyter = tmp_path_factory.mktemp("jupyter")
    spec_dir = jupyter / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "p3d notebook test",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    env = dict(os.environ)
    env["JUPYTER_PATH"] = os.pathsep.join([str(jupyter), env.get("JUPYTER_PATH", "")]).strip(os.pathsep)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).strip(os.pathsep)
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env["WANDB_MODE"] = "disabled"
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def _execute(name: str, env: dict, monkeypatch) -> "nbformat.NotebookNode":
    # the kernel spec is looked up in this process; the kernel itself gets ``env``
    monkeypatch.setenv("JUPYTER_PATH", env["JUPYTER_PATH"])
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name=KERNEL_NAME,
        timeout=300,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute(env=env)  # raises CellExecutionError on the first failing cell
    return nb


def _text_outputs(nb) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                out.append(o.get("text", ""))
            elif "data" in o:
                out.extend(str(o["data"].get(k, "")) for k in ("text/plain", "text/markdown", "text/html"))
    return "\n".join(out)


def _images(nb) -> int:
    return sum("image/png" in o.get("data", {}) for cell in nb.cells for o in cell.get("outputs", []))


def test_01_table1_ablation(tiny_results, kernel_env, monkeypatch):
    from p3d_lightning.ablation import read_results

    env = dict(kernel_env, P3D_RESULTS_DIR=str(tiny_results["ablation"]),
               P3D_CLIP_LENGTH_DIR=str(tiny_results["clip_length"]))
    nb = _execute("01_table1_ablation", env, monkeypatch)
    text = _text_outputs(nb)
    # our rows come from the runner's results.csv: its archs and its finish times are shown
    for row in read_results(tiny_results["ablation"] / "results.csv"):
        assert row["arch"] in text and row["finished_at"] in text
    assert "P3D ResNet" in text and "paper: top-1 (%)" in text
    assert "one seed per model" in text  # the main ablation has one seed
    # the clip-length ablation (two seeds): its across-seeds tables and its figure
    assert "p3d_tiny, 8 frames" not in text and "p3d_t8" in text and "video top-1 95% low" in text
    assert "mean diff (pp)" in text and "supported" in text
    assert _images(nb) == 4  # accuracy bars, accuracy vs speed, training curves, clip length


def test_02_model_zoo(kernel_env, monkeypatch):
    env = dict(kernel_env, P3D_ZOO_MODELS="resnet50,p3d,p3d199")
    nb = _execute("02_model_zoo", env, monkeypatch)
    text = _text_outputs(nb)
    assert "c3d (published)" in text and "p3d199" in text
    assert "3 of 3" in text  # parameter counts equal the official architectures
    assert _images(nb) == 1


def test_03_table2_protocol(tiny_results, kernel_env, monkeypatch):
    from p3d_lightning import reports

    preds = ",".join(f"{k}={v}" for k, v in tiny_results["predictions"].items())
    env = dict(kernel_env, P3D_PREDICTIONS=preds, P3D_DATASET="synthetic-tiny")
    nb = _execute("03_table2_protocol", env, monkeypatch)
    text = _text_outputs(nb)
    assert "ours (synthetic-tiny, 4 classes, 8 videos)" in text
    assert "P3D ResNet-199" in text and "paper (Sports-1M" in text
    clips = reports.protocol_metrics(reports.load_clip_predictions(tiny_results["predictions"]["p3d"]))["num_clips"]
    assert clips == 8 * MODELS["p3d"][2]  # 8 test videos x 2 clips, from the saved predictions
    assert _images(nb) == 1


def test_04_representation(tiny_results, kernel_env, monkeypatch):
    feats = ",".join(f"{k}={v}" for k, v in tiny_results["features"].items())
    env = dict(kernel_env, P3D_FEATURES=feats, P3D_TEST_FRACTION="0.5")
    nb = _execute("04_representation", env, monkeypatch)
    text = _text_outputs(nb)
    from p3d_lightning import reports

    dims = {reports.load_features(p).features.shape[1] for p in tiny_results["features"].values()}
    for d in dims:  # videos, feature dim and classes, read from the files
        assert re.search(rf"\b8\s+{d}\s+4\b", text)
    assert "train_accuracy" in text and "paper: P3D" in text
    assert _images(nb) == 1


# ------------------------------------------------------------------ committed form
@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebooks_are_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    # a parameters cell near the top that reads the environment
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and nb.cells.index(params[0]) <= 2 and "os.environ" in params[0].source + "env_mapping"


def _paper_numbers():
    from p3d_lightning import paper

    values = [r.top1 for r in paper.TABLE1.values()] + [r.speed for r in paper.TABLE1.values()]
    values += [v for row in paper.TABLE2.values() for v in row.values() if v is not None]
    values += [v for row in paper.TRANSFER_RESULTS.values() for v in row.values()]
    patterns = [rf"(?<![\d.]){re.escape(f'{v:g}')}(?![\d])" for v in values if v != int(v)]
    sizes = list(paper.PAPER_SIZES_MB.values()) + [paper.C3D_SIZE_MB]
    patterns += [rf"\b{int(v)}\s*MB" for v in sizes]
    patterns += [rf"\b{d}[- ]layer" for d in paper.PAPER_DEPTHS.values()]
    return patterns


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebooks_type_no_paper_number(name):
    """The paper's numbers live in ``p3d_lightning.paper`` only; notebooks read them from there."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    source = "\n".join(c.source for c in nb.cells)
    for pattern in _paper_numbers():
        assert not re.search(pattern, source), f"{name}.ipynb types a paper number matching {pattern!r}"
