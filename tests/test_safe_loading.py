"""Safe loading: a malicious pickle passed to every loading function and command never runs.

The hostile file is what an attacker would ship as ``features.pt``, ``clip_predictions.pt``,
``last.ckpt`` or ``resnet50.pth``: a pickle whose ``__reduce__`` writes a marker file when it
is unpickled. Each test hands it to one of the package's loaders (the ones the notebooks call
included) and checks that the loader refuses it with an error naming the file and that the
marker was never written. ``test_the_payload_is_live`` proves the payload does run under plain
``pickle``, so the other tests cannot pass vacuously.
"""

import ast
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "p3d_lightning"


class Payload:
    """Unpickling this writes ``marker``: the stand-in for arbitrary code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "the malicious pickle was executed"


def _evil_torch(path, marker, wrap=None, legacy=False):
    """A torch.save file holding the payload inside the structure ``wrap`` builds around it."""
    obj = Payload(marker)
    obj = wrap(obj) if wrap else {"features": obj}
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def _refused(call, path, exc=Exception):
    """``call()`` raises, and the message names ``path``."""
    with pytest.raises(exc) as info:
        call()
    assert str(path) in str(info.value) or os.path.basename(str(path)) in str(info.value), str(info.value)
    return info.value


def test_the_payload_is_live(tmp_path):
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(Payload(probe)))
    assert probe.read_text() == "pwned"


_LOADING_CALLS = {"load", "_load", "pl_load", "load_from_checkpoint", "load_checkpoint", "fit", "validate", "test",
                  "predict", "load_state_dict_from_url"}


def test_no_unsafe_torch_load_in_the_package():
    """Every torch.load in the package passes weights_only=True; nothing asks for weights_only=False."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            kw = {k.arg: k.value for k in node.keywords}
            value = kw.get("weights_only")
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            # (on save_checkpoint, weights_only=False means "save the full state", not unsafe loading)
            if name in _LOADING_CALLS and isinstance(value, ast.Constant) and value.value is False:
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {name}(weights_only=False)")
            is_torch_load = (isinstance(func, ast.Attribute) and func.attr == "load"
                             and isinstance(func.value, ast.Name) and func.value.id == "torch")
            if is_torch_load and not (isinstance(value, ast.Constant) and value.value is True):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} torch.load without weights_only=True")
            if isinstance(func, ast.Attribute) and func.attr in ("load", "loads") and \
                    isinstance(func.value, ast.Name) and func.value.id in ("pickle", "dill", "cloudpickle"):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {func.value.id}.{func.attr}")
            if isinstance(func, ast.Attribute) and func.attr == "load" and \
                    isinstance(func.value, ast.Name) and func.value.id in ("np", "numpy"):
                allow = kw.get("allow_pickle")
                if not (isinstance(allow, ast.Constant) and allow.value is False):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} np.load without allow_pickle=False")
    assert not offenders, offenders


# ----------------------------------------------------------------------------- features


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_features_load_features_pt(tmp_path, marker, legacy):
    from p3d_lightning.features import load_features

    path = _evil_torch(tmp_path / "features.pt", marker, legacy=legacy)
    err = _refused(lambda: load_features(str(path)), path, ValueError)
    assert "weights_only=False" not in str(err)  # no advice to load it unsafely


def test_features_load_features_raw_pickle(tmp_path, marker):
    from p3d_lightning.features import load_features

    path = tmp_path / "features.pt"
    path.write_bytes(pickle.dumps({"features": Payload(marker)}))
    _refused(lambda: load_features(str(path)), path, ValueError)


def test_features_load_features_npz_with_pickled_object(tmp_path, marker):
    from p3d_lightning.features import load_features

    path = tmp_path / "features.npz"
    with open(path, "wb") as f:
        np.savez(f, features=np.zeros((2, 3), np.float32),
                 video_ids=np.array([Payload(marker), "b"], dtype=object))
    _refused(lambda: load_features(str(path)), path, ValueError)


def test_feature_writer_ddp_shard_merge(tmp_path, marker):
    """Rank 0 merges the other ranks' shards: a hostile shard in the parts folder never runs."""
    from p3d_lightning.features import merge_shards

    parts = tmp_path / ".features.parts"
    parts.mkdir()
    good = {"feature": torch.zeros(1, 4), "probs": torch.zeros(1, 2), "video_idx": torch.zeros(1, dtype=torch.long),
            "clip_idx": torch.zeros(1, dtype=torch.long)}
    torch.save(good, parts / "rank0.pt")
    _evil_torch(parts / "rank1.pt", marker, wrap=lambda p: {"feature": p})
    _refused(lambda: merge_shards(parts, 2), parts / "rank1.pt", ValueError)
    torch.save(good, parts / "rank1.pt")
    assert merge_shards(parts, 2)["feature"].shape == (2, 4)  # the real format still loads


# ----------------------------------------------------------------------------- reports (notebooks 03 and 04)


def test_reports_load_features(tmp_path, marker):
    from p3d_lightning import reports

    pt = _evil_torch(tmp_path / "features.pt", marker)
    _refused(lambda: reports.load_features(pt), pt, ValueError)
    npz = tmp_path / "features.npz"
    with open(npz, "wb") as f:
        np.savez(f, features=np.array([Payload(marker)], dtype=object), labels=np.zeros(1, np.int64))
    _refused(lambda: reports.load_features(npz), npz, ValueError)


def test_reports_load_clip_predictions(tmp_path, marker):
    from p3d_lightning import reports

    path = _evil_torch(tmp_path / "clip_predictions.pt", marker, wrap=lambda p: {"scores": p, "labels": [1]})
    _refused(lambda: reports.load_clip_predictions(path), path, ValueError)


def test_reports_load_ablation_results_never_unpickles(tmp_path, marker):
    """Notebook 01 reads results.csv as text: a pickle in its place is an error, never code."""
    from p3d_lightning import reports

    (tmp_path / "results.csv").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(Exception):
        reports.load_ablation_results(tmp_path)


def test_reports_clip_predictions_command(tmp_path, marker, capsys):
    """``p3d-report clip-predictions --ckpt evil.ckpt``."""
    from p3d_lightning.commands.report import main as report_main

    ckpt = _evil_torch(tmp_path / "evil.ckpt", marker, wrap=lambda p: {"state_dict": {}, "hyper_parameters": p})
    config = REPO / "experiments" / "synthetic" / "p3d.yaml"
    _refused(lambda: report_main(["clip-predictions", "--config", str(config), "--ckpt", str(ckpt),
                                  "--out", str(tmp_path / "out.pt"), "--set", f"data.root={tmp_path / 'data'}"]),
             ckpt, ValueError)


# ----------------------------------------------------------------------------- model weights


def _tiny_model():
    from p3d_lightning.models import create_model

    return create_model("p3d_tiny", num_classes=3, width_mult=0.125)


@pytest.mark.parametrize("loader", ["read_state_dict", "load_checkpoint", "inflate_imagenet_resnet", "load_qijiezhao"])
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_weights_loaders(tmp_path, marker, loader, legacy):
    from p3d_lightning import models as weights  # the loaders of weights.py and converters.py

    path = _evil_torch(tmp_path / "weights.pth", marker, wrap=lambda p: {"state_dict": {"fc.weight": p}},
                       legacy=legacy)
    if loader == "read_state_dict":
        call = lambda: weights.read_state_dict(path)  # noqa: E731
    elif loader == "load_qijiezhao":
        from p3d_lightning.models import create_model

        model = create_model("p3d199", num_classes=3, width_mult=0.0625)
        call = lambda: weights.load_qijiezhao(model, path)  # noqa: E731
    else:
        model = _tiny_model()
        call = lambda: getattr(weights, loader)(model, path)  # noqa: E731
    err = _refused(call, path, weights.CheckpointError)
    assert "weights_only=False" not in str(err)


@pytest.mark.parametrize("fmt", ["imagenet", "qijiezhao", "lightning"])
def test_module_pretrained(tmp_path, marker, fmt):
    """``model.pretrained`` in a config goes through the same loaders."""
    from p3d_lightning.models.weights import CheckpointError
    from p3d_lightning.module import P3DClassifier

    path = _evil_torch(tmp_path / "pretrained.pth", marker, wrap=lambda p: {"state_dict": {"x": p}})
    arch = "p3d199" if fmt == "qijiezhao" else "p3d_tiny"
    module = P3DClassifier(arch=arch, num_classes=3, width_mult=0.0625, pretrained=str(path), pretrained_format=fmt)
    _refused(module.load_pretrained, path, CheckpointError)


# ----------------------------------------------------------------------------- commands that take a checkpoint


def _tiny_args(root, tmp):
    return [
        "--config", str(REPO / "experiments" / "synthetic" / "p3d.yaml"),
        "--model.arch", "p3d_tiny", "--model.width_mult", "0.125",
        "--data.root", str(root), "--data.num_classes", "4", "--data.resize", "[40, 52]",
        "--data.crop_size", "32", "--data.num_eval_clips", "2", "--data.batch_size", "4",
        "--data.eval_batch_size", "8", "--data.num_workers", "0", "--data.progress", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.precision", "32-true", "--trainer.logger", "false",
        "--trainer.max_steps", "1",
        "--checkpoint.dirpath", str(tmp / "ckpt"), "--features.output_dir", str(tmp / "feats"),
    ]


def _refused_command(call, path, capsys, names_file=True):
    """A command refuses ``path`` (an exception or a non-zero exit) and says which file."""
    try:
        code = call()
    except SystemExit as e:
        code = e.code
        text = ""
    except Exception as e:  # noqa: BLE001 -- any refusal will do, as long as it names the file
        code, text = 1, str(e)
    out = capsys.readouterr()
    text += out.out + out.err
    assert code not in (0, None), "the command accepted a malicious checkpoint"
    if names_file:
        assert os.path.basename(str(path)) in text, text[-2000:]
    return text


@pytest.mark.parametrize("command", ["fit", "validate", "test", "predict"])
def test_p3d_ckpt_path(tiny_synthetic_root, tmp_path, marker, capsys, monkeypatch, command):
    """``p3d <command> --ckpt_path evil.ckpt`` (Lightning's checkpoint loading)."""
    from p3d_lightning.commands.p3d import main

    monkeypatch.chdir(tmp_path)
    ckpt = _evil_torch(tmp_path / "evil.ckpt", marker, wrap=lambda p: {"state_dict": {}, "epoch": p})
    _refused_command(lambda: main([command, *_tiny_args(tiny_synthetic_root, tmp_path), "--ckpt_path", str(ckpt)]),
                     ckpt, capsys)


def _bench_check(tiny_synthetic_root, tmp_path, marker, capsys, monkeypatch, names_file):
    from p3d_lightning.commands import bench as benchmark

    monkeypatch.chdir(tmp_path)
    ckpt = _evil_torch(tmp_path / "evil.ckpt", marker, wrap=lambda p: {"state_dict": {}, "hyper_parameters": p})
    config = REPO / "experiments" / "synthetic" / "p3d.yaml"
    _refused_command(lambda: benchmark.main(["--check", str(ckpt), "--config", str(config), "--out-dir",
                                             str(tmp_path / "bench"), "--set", f"data.root={tiny_synthetic_root}",
                                             "data.num_classes=4", "model.arch=p3d_tiny", "data.num_workers=0",
                                             "data.progress=false"]),
                     ckpt, capsys, names_file=names_file)


def test_p3d_bench_check(tiny_synthetic_root, tmp_path, marker, capsys, monkeypatch):
    """``p3d-bench --check evil.ckpt --config ...`` refuses the file and never runs it."""
    _bench_check(tiny_synthetic_root, tmp_path, marker, capsys, monkeypatch, names_file=False)


def test_p3d_bench_check_error_names_the_file(tiny_synthetic_root, tmp_path, marker, capsys, monkeypatch):
    _bench_check(tiny_synthetic_root, tmp_path, marker, capsys, monkeypatch, names_file=True)


def _ablation_with_planted_last_ckpt(root, tmp_path, marker):
    import yaml

    from p3d_lightning.ablation import load_ablation_config, run_ablation

    experiment = {
        "seed_everything": 0,
        "model": {"arch": "p3d", "width_mult": 0.0625, "lr_schedule": "constant", "partial_bn": False},
        "data": {"dataset": "ucf101", "root": str(root), "num_classes": 4, "clip_len": 16,
                 "resize": [36, 48], "crop_size": 32, "num_eval_clips": 1, "batch_size": 4, "num_workers": 0,
                 "progress": False},
        "trainer": {"max_steps": 1, "accelerator": "cpu", "devices": 1, "precision": "32-true",
                    "limit_val_batches": 1, "num_sanity_val_steps": 0, "enable_model_summary": False},
    }
    (tmp_path / "p3d.yaml").write_text(yaml.safe_dump(experiment))
    out = tmp_path / "out"
    cfg = {"name": "evil_ablation", "output_dir": str(out), "runs": {"p3d": "p3d.yaml"},
           "speed": {"batch_size": 1, "warmup": 0, "repeats": 1, "paper_scale": False}}
    (tmp_path / "ablation.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    ckpt_dir = out / "runs" / "p3d" / "checkpoints"  # where the runner resumes an unfinished model from
    ckpt_dir.mkdir(parents=True)
    _evil_torch(ckpt_dir / "last.ckpt", marker, wrap=lambda p: {"state_dict": {}, "epoch": p})
    with pytest.raises(Exception) as info:  # training on (not refusing) the planted file fails this test
        run_ablation(load_ablation_config(tmp_path / "ablation.yaml"), wandb_mode="disabled", progress=False)
    assert not marker.exists()
    text = str(info.value)
    assert "Weights only" in text or "checkpoint" in text.lower(), text  # refused the file, not failed elsewhere
    return text


def test_ablation_resume_from_a_planted_last_ckpt(tiny_synthetic_root, tmp_path, marker):
    """``p3d-ablation`` resumes an unfinished model from its ``last.ckpt``: a hostile one is refused."""
    _ablation_with_planted_last_ckpt(tiny_synthetic_root, tmp_path, marker)


def test_ablation_resume_error_names_the_file(tiny_synthetic_root, tmp_path, marker):
    assert "last.ckpt" in _ablation_with_planted_last_ckpt(tiny_synthetic_root, tmp_path, marker)


def test_real_outputs_load_with_weights_only(tiny_synthetic_root, tmp_path, monkeypatch):
    """What the package writes (checkpoint, features, clip predictions) loads under weights_only=True,
    through the same loaders that refuse the payload."""
    import glob

    from p3d_lightning import reports
    from p3d_lightning.commands.p3d import main
    from p3d_lightning.commands.report import main as report_main
    from p3d_lightning.features import load_features

    monkeypatch.chdir(tmp_path)
    args = _tiny_args(tiny_synthetic_root, tmp_path)
    main(["fit", *args, "--trainer.max_steps", "2"])
    last = sorted(glob.glob(str(tmp_path / "**" / "last.ckpt"), recursive=True))
    assert last, "fit wrote no last.ckpt"
    state = torch.load(last[0], map_location="cpu", weights_only=True)
    assert "state_dict" in state
    main(["predict", *args, "--ckpt_path", last[0]])
    feats = load_features(str(tmp_path / "feats" / "features.pt"))
    assert feats["features"].shape[0] == 8 and len(feats["video_ids"]) == 8
    out = tmp_path / "clip_predictions.pt"
    config = REPO / "experiments" / "synthetic" / "p3d.yaml"
    sets = [f"data.root={tiny_synthetic_root}", "data.num_classes=4", "model.arch=p3d_tiny", "model.width_mult=0.125",
            "data.resize=[40, 52]", "data.crop_size=32", "data.num_eval_clips=2", "data.num_workers=0",
            "data.progress=false"]
    assert report_main(["clip-predictions", "--config", str(config), "--ckpt", last[0], "--out", str(out),
                        "--set", *sets]) == 0
    assert reports.load_clip_predictions(out)["scores"].shape == (16, 4)


def test_fresh_interpreter_refuses_it(tmp_path):
    """As a user runs it: a new Python process loading a hostile predictions file (notebook 03's call)."""
    import subprocess

    marker = tmp_path / "PWNED"
    path = _evil_torch(tmp_path / "evil.pt", marker, wrap=lambda p: {"scores": p})
    code = "import sys; from p3d_lightning import reports; reports.load_clip_predictions(sys.argv[1])"
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "evil.pt" in proc.stderr, proc.stderr[-2000:]
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "random", "empty"])
def test_corrupt_files_are_named(tmp_path, damage):
    """Not hostile, just broken: every loader's error names the file."""
    from p3d_lightning import reports
    from p3d_lightning.features import load_features
    from p3d_lightning.models.weights import CheckpointError, read_state_dict

    good = tmp_path / "good.pt"
    torch.save({"features": torch.zeros(2, 3), "labels": torch.zeros(2, dtype=torch.long)}, good)
    data = good.read_bytes()
    blob = {"truncated": data[: len(data) // 2], "random": os.urandom(2000), "empty": b""}[damage]
    for name, call, exc in [
        ("features.pt", load_features, ValueError),
        ("features2.pt", reports.load_features, ValueError),
        ("features.npz", load_features, ValueError),
        ("clip_predictions.pt", reports.load_clip_predictions, ValueError),
        ("weights.pth", read_state_dict, CheckpointError),
    ]:
        path = tmp_path / name
        path.write_bytes(blob)
        _refused(lambda: call(str(path)), path, exc)
