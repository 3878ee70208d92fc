"""Tests for p3d_lightning.models.zoo: the architecture table, metadata, counts, key snapshots.

Regenerate the key snapshots after a deliberate rename with
``P3D_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_zoo.py -k snapshot``.
"""
import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from p3d_lightning.models import count_params, create_model, get_model_cfg, list_models
from p3d_lightning.paper import PAPER_PARAM_COUNTS
from paths import SNAPSHOTS

SNAPSHOT = SNAPSHOTS / "state_dict_keys.json"
REQUIRED = {"resnet50", "p3d_a", "p3d_b", "p3d_c", "p3d", "p3d131", "p3d199", "p3d_tiny"}


def _meta(name, **kw):
    with torch.device("meta"):
        return create_model(name, **kw)


def test_required_names_listed():
    assert REQUIRED <= set(list_models())


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown model 'p3d_d'; valid names: resnet50, p3d_a, .*p3d_tiny"):
        create_model("p3d_d")
    with pytest.raises(ValueError, match="valid names"):
        get_model_cfg("resnet18")


FULL_WIDTH_FORWARD = {"resnet50", "p3d", "p3d_tiny", "resnet_tiny"}


@pytest.mark.parametrize("name", list_models())
def test_every_entry_builds_and_runs(name):
    """Every entry runs forward; the big ones at width_mult 0.25 to stay fast on 2 CPU cores
    (their full-width builds are checked on the meta device by the count and snapshot tests)."""
    model = create_model(name, **({} if name in FULL_WIDTH_FORWARD else {"width_mult": 0.25})).eval()
    cfg = get_model_cfg(name)
    clip_len = max(cfg.clip_len, 2) if model.min_clip_len == 1 else model.min_clip_len + 1
    with torch.no_grad():
        out = model(torch.randn(1, cfg.in_channels, clip_len, 32, 32))
    assert out.shape == (1, cfg.num_classes) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", list_models())
def test_cfg_matches_model(name):
    cfg, model = get_model_cfg(name), _meta(name)
    assert cfg.name == name
    assert model.conv1.in_channels == cfg.in_channels == len(cfg.mean) == len(cfg.std)
    assert getattr(model, cfg.classifier) is model.fc and model.fc.out_features == cfg.num_classes
    assert model.num_features == cfg.num_features and model.dropout.p == cfg.dropout
    assert cfg.clip_len >= model.min_clip_len
    assert model.output_clip_len(cfg.clip_len) == 1  # the default clip collapses to one step before res5


@pytest.mark.parametrize("key", sorted(PAPER_PARAM_COUNTS))
def test_param_counts_equal_the_paper(key):
    name, num_classes = key
    assert count_params(_meta(name, num_classes=num_classes)) == PAPER_PARAM_COUNTS[key]


def test_param_counts_pinned():
    assert count_params(_meta("resnet50", num_classes=101)) == 23_714_981
    for name in ("p3d_a", "p3d_b", "p3d_c", "p3d"):
        assert count_params(_meta(name, num_classes=101)) == 25_132_581
    assert count_params(_meta("p3d131", num_classes=101)) == 47_475_749
    assert count_params(_meta("p3d199", num_classes=400)) == 66_492_240
    assert count_params(_meta("p3d199_flow")) == 66_492_240 - 64 * 49  # one input channel less


#: Learnable parameters of the official deploy prototxts (ZhaofanQiu/pseudo-3d-residual-networks,
#: prototxt/deploy_p3d_resnet_*.prototxt), summed layer by layer from the files: Convolution
#: (bias_term false) num_output x C_in x kernel, BN slope + bias, InnerProduct weight + bias.
#: These are the only counts checked against an official file; the P3D ResNet-50 counts are
#: computed from the layout (no official P3D-50 file exists; the paper gives only 98 MB).
PROTOTXT_PARAM_COUNTS = {
    ("p3d199", 400, 3): 66_492_240,  # deploy_p3d_resnet_kinetics.prototxt
    ("p3d199_flow", 400, 2): 66_489_104,  # deploy_p3d_resnet_kinetics_flow.prototxt
    ("p3d199", 487, 3): 66_670_503,  # deploy_p3d_resnet_sports1m.prototxt
}


@pytest.mark.parametrize("key", sorted(PROTOTXT_PARAM_COUNTS))
def test_param_counts_equal_the_prototxts(key):
    name, num_classes, in_channels = key
    model = _meta(name, num_classes=num_classes, in_channels=in_channels)
    assert count_params(model) == PROTOTXT_PARAM_COUNTS[key]


def test_overrides():
    model = create_model("p3d_tiny", num_classes=4, dropout=0.0, width_mult=0.25, in_channels=2)
    assert (model.fc.out_features, model.dropout.p, model.conv1.out_channels, model.in_channels) == (4, 0.0, 16, 2)
    with pytest.raises(TypeError, match="create_model\\('p3d_tiny'\\): bad override"):
        create_model("p3d_tiny", num_clases=4)


def _key_snapshot(model):
    lines = [f"{k} {tuple(v.shape)}" for k, v in sorted(model.state_dict().items())]
    keys = [k for k, _ in sorted(model.state_dict().items())]
    return {"num_keys": len(lines), "sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest(),
            "sample": [lines[i] for i in sorted({0, len(lines) // 3, len(lines) // 2, len(lines) - 1})],
            "has_temporal": sum(k.endswith("conv3.weight") for k in keys)}


def test_state_dict_key_snapshots():
    """A rename or reshape of any parameter/buffer of any architecture fails here loudly."""
    current = {name: _key_snapshot(_meta(name)) for name in list_models()}
    if os.environ.get("P3D_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    stored = json.loads(SNAPSHOT.read_text())
    assert sorted(stored) == sorted(current)
    for name in current:
        assert current[name]["sample"] == stored[name]["sample"], name
        assert current[name] == stored[name], f"state-dict keys of {name!r} changed (see module docstring)"


def test_snapshot_names_follow_the_contract():
    keys = set(_meta("p3d").state_dict())
    assert {"conv1.weight", "bn1.running_var", "layer1.0.conv3.weight", "layer1.0.bn3.weight",
            "layer1.0.downsample.0.weight", "layer1.0.downsample.1.weight", "layer4.2.conv4.weight",
            "fc.weight", "fc.bias"} <= keys
    assert not any(k.startswith("layer4") and ".conv3." in k for k in keys)  # res5 is 2D
