"""Shared fixtures: a tiny synthetic video dataset (generated once per session) and W&B isolation."""

import os
import sys
from pathlib import Path

import pytest

# The test tree mirrors the package (tests/<subpackage>/test_<module>.py); the shared helpers
# (cpu_caps, training_utils, resume_killer) sit here and are imported by name from every folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True)
def _wandb_in_tmp(tmp_path, monkeypatch):
    """Keep every W&B file inside the test's temporary folder and W&B off unless a test opts in."""
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_home"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    monkeypatch.setenv("WANDB_MODE", os.environ.get("WANDB_MODE", "disabled") or "disabled")
    yield
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    except ImportError:
        pass


@pytest.fixture(scope="session")
def tiny_synthetic_root(tmp_path_factory):
    """A tiny synthetic motion dataset in the UCF101 layout: 4 classes, 4 videos each, 48x64."""
    from p3d_lightning.data import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic_tiny")
    generate_synthetic_dataset(
        str(root), num_pairs=2, videos_per_class=4, clips_per_group=2, size=(48, 64), num_frames=20,
        seed=0, num_workers=1, progress=False,
    )
    return root
