"""Tests for p3d_lightning.models.weights: strict loading, ImageNet inflation, qijiezhao layout."""
import io
import json
from pathlib import Path

import pytest
import torch

from p3d_lightning.models import count_params, create_model
from p3d_lightning.models.converters import export_qijiezhao, inflate_imagenet_resnet, load_qijiezhao
from p3d_lightning.models.weights import CheckpointError, LoadReport, load_checkpoint, read_state_dict

from paths import REFERENCE
WIDTH = 0.25  # inflation tests: full ResNet-50 depth, quarter width (stem 16, widths 16..128)


def _bn(sd, prefix, n, g):
    sd[prefix + "weight"] = torch.rand(n, generator=g) + 0.5
    sd[prefix + "bias"] = torch.randn(n, generator=g) * 0.1
    sd[prefix + "running_mean"] = torch.randn(n, generator=g) * 0.1
    sd[prefix + "running_var"] = torch.rand(n, generator=g) + 0.5
    sd[prefix + "num_batches_tracked"] = torch.tensor(100)


def _conv(out, cin, k, g):
    return torch.randn(out, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5


def torchvision_resnet_sd(depths=(3, 4, 6, 3), width_mult=WIDTH, num_classes=1000, seed=0):
    """A random state dict in torchvision's ResNet key layout (what ``resnet50-*.pth`` holds)."""
    g = torch.Generator().manual_seed(seed)
    stem = max(8, round(64 * width_mult))
    sd = {"conv1.weight": _conv(stem, 3, 7, g)}
    _bn(sd, "bn1.", stem, g)
    cin = stem
    for i, (depth, width) in enumerate(zip(depths, (64, 128, 256, 512))):
        w = max(8, round(width * width_mult))
        for j in range(depth):
            p = f"layer{i + 1}.{j}."
            sd[p + "conv1.weight"] = _conv(w, cin, 1, g)
            _bn(sd, p + "bn1.", w, g)
            sd[p + "conv2.weight"] = _conv(w, w, 3, g)
            _bn(sd, p + "bn2.", w, g)
            sd[p + "conv3.weight"] = _conv(4 * w, w, 1, g)
            _bn(sd, p + "bn3.", 4 * w, g)
            if j == 0:
                sd[p + "downsample.0.weight"] = _conv(4 * w, cin, 1, g)
                _bn(sd, p + "downsample.1.", 4 * w, g)
            cin = 4 * w
    sd["fc.weight"] = torch.randn(num_classes, cin, generator=g) * 0.05
    sd["fc.bias"] = torch.randn(num_classes, generator=g) * 0.05
    return sd


@pytest.fixture(scope="module")
def imagenet_sd():
    return torchvision_resnet_sd(num_classes=7)


@pytest.fixture(scope="module")
def frame_and_logits(imagenet_sd):
    """The project's 2D ResNet-50 on one frame, with the fabricated ImageNet weights."""
    resnet = create_model("resnet50", width_mult=WIDTH, num_classes=7)
    report = inflate_imagenet_resnet(resnet, imagenet_sd)
    assert not report.initialized and not report.kept and not report.dropped
    frame = torch.rand(1, 3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return frame, resnet.eval()(frame)


@pytest.mark.parametrize("name", ["p3d_a", "p3d_b", "p3d_c", "p3d"])
def test_identity_inflation_equals_2d_resnet(name, imagenet_sd, frame_and_logits):
    frame, logits_2d = frame_and_logits
    model = create_model(name, width_mult=WIDTH, num_classes=7)
    report = inflate_imagenet_resnet(model, imagenet_sd, temporal_init="identity")
    assert len(report.initialized) == 13 * 6  # conv3 + 5 bn3 tensors in each of the 13 P3D units
    assert len(report.loaded) == len(imagenet_sd)
    clip = frame.expand(-1, -1, 16, -1, -1)  # 16 identical frames
    with torch.no_grad():
        logits = model.eval()(clip)
    torch.testing.assert_close(logits, logits_2d, atol=1e-4, rtol=1e-4)
    assert logits.abs().max() > 1e-2  # not trivially zero


def test_gaussian_init(imagenet_sd, frame_and_logits):
    model = create_model("p3d", width_mult=WIDTH, num_classes=7)
    inflate_imagenet_resnet(model, imagenet_sd, temporal_init="gaussian", gaussian_std=1e-3)
    w = model.layer2[1].conv3.weight
    assert 0.5e-3 < w.std().item() < 2e-3 and abs(w.mean().item()) < 1e-3
    assert torch.equal(model.layer2[1].bn3.weight, torch.ones_like(model.layer2[1].bn3.weight))
    torch.testing.assert_close(model.layer1[0].conv2.weight[:, :, 0], imagenet_sd["layer1.0.conv2.weight"])
    torch.testing.assert_close(model.layer1[0].conv4.weight[:, :, 0], imagenet_sd["layer1.0.conv3.weight"])
    with pytest.raises(ValueError, match="temporal_init"):
        inflate_imagenet_resnet(model, imagenet_sd, temporal_init="zeros")


def test_inflation_is_trainable():
    """Identity init of B zeroes bn3's gamma, not T: gradients still reach T and bn3.weight."""
    model = create_model("p3d_b", depths=(1, 1, 1, 1), width_mult=WIDTH, num_classes=7)
    inflate_imagenet_resnet(model, torchvision_resnet_sd(depths=(1, 1, 1, 1), num_classes=7))
    model(torch.rand(2, 3, 16, 32, 32)).logsumexp(1).sum().backward()
    unit = model.layer1[0]
    assert unit.bn3.weight.grad.abs().sum() > 0 and unit.conv3.weight.abs().sum() > 0


def test_classifier_needs_drop_classifier(tmp_path):
    sd = torchvision_resnet_sd(depths=(1, 1, 1, 1), width_mult=0.125, num_classes=1000)
    path = tmp_path / "resnet50-0000.pth"
    torch.save(sd, path)
    model = create_model("p3d_tiny", num_classes=5)
    with pytest.raises(CheckpointError, match=r"resnet50-0000.pth.*'fc.weight'.*\(1000, 256\).*\(5, 256\).*drop_classifier"):
        inflate_imagenet_resnet(model, path)
    fc_before = model.fc.weight.clone()
    report = inflate_imagenet_resnet(model, path, drop_classifier=True)
    assert torch.equal(model.fc.weight, fc_before)
    assert report.dropped == ["fc.weight", "fc.bias"] and report.kept == ["fc.weight", "fc.bias"]
    text = str(report)
    assert text.startswith(f"loaded {len(sd) - 2} tensors from {path}") and "dropped 2 source keys: fc.weight" in text
    assert isinstance(report, LoadReport) and report.source == str(path)


def test_shape_mismatch_names_file_and_key(tmp_path):
    sd = torchvision_resnet_sd(depths=(1, 1, 1, 1), width_mult=0.125, num_classes=10)
    sd["layer2.0.conv2.weight"] = torch.zeros(16, 16, 5, 5)
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(CheckpointError, match=r"bad.pth: shape mismatch at key 'layer2.0.conv2.weight': "
                                              r"checkpoint \(16, 16, 1, 5, 5\).*expects \(16, 16, 1, 3, 3\)"):
        inflate_imagenet_resnet(create_model("p3d_tiny"), path)


def test_missing_and_unexpected_keys():
    sd = torchvision_resnet_sd(depths=(1, 1, 1, 1), width_mult=0.125, num_classes=10)
    model = create_model("p3d_tiny")
    with pytest.raises(CheckpointError, match="missing from the checkpoint, first 'layer3.0.conv2.weight'"):
        inflate_imagenet_resnet(model, {k: v for k, v in sd.items() if k != "layer3.0.conv2.weight"})
    with pytest.raises(CheckpointError, match="does not have, first 'layer1.1.conv1.weight'"):
        inflate_imagenet_resnet(model, {**sd, "layer1.1.conv1.weight": torch.zeros(8, 32, 1, 1)})
    with pytest.raises(CheckpointError, match="not a torchvision-layout"):
        inflate_imagenet_resnet(model, model.state_dict())


def test_unreadable_files(tmp_path):
    model = create_model("p3d_tiny")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a checkpoint" * 10)
    for fn in (load_checkpoint, load_qijiezhao, inflate_imagenet_resnet):
        with pytest.raises(CheckpointError, match=r"could not read checkpoint .*corrupt.pth"):
            fn(model, corrupt)
    with pytest.raises(CheckpointError, match=r"not found: .*nope.pth"):
        load_checkpoint(model, tmp_path / "nope.pth")
    pickled = tmp_path / "pickled.pth"
    torch.save({"state_dict": model.state_dict(), "obj": LoadReport("x")}, pickled)  # not weights-only
    with pytest.raises(CheckpointError, match=r"could not read checkpoint .*pickled.pth"):
        load_checkpoint(model, pickled)
    notsd = tmp_path / "list.pth"
    torch.save([1, 2], notsd)
    with pytest.raises(CheckpointError, match="list.pth: expected a state dict"):
        read_state_dict(notsd)


def test_load_checkpoint_own_layout(tmp_path):
    src = create_model("p3d_tiny", num_classes=3)
    path = tmp_path / "run.ckpt"  # a Lightning-style checkpoint: system prefix plus other entries
    torch.save({"epoch": 2, "state_dict": {**{f"model.{k}": v for k, v in src.state_dict().items()},
                                           "criterion.weight": torch.ones(3)}}, path)
    dst = create_model("p3d_tiny", num_classes=3)
    report = load_checkpoint(dst, path)
    assert report.dropped == ["criterion.weight"] and len(report.loaded) == len(src.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    # another num_classes: refused unless the classifier is dropped
    other = create_model("p3d_tiny", num_classes=4)
    with pytest.raises(CheckpointError, match=r"run.ckpt: shape mismatch at key 'model.fc.weight'"):
        load_checkpoint(other, path)
    assert load_checkpoint(other, path, drop_classifier=True).kept == ["fc.weight", "fc.bias"]
    # strict=False tolerates missing keys, never a shape mismatch
    partial = {k: v for k, v in src.state_dict().items() if not k.startswith("layer4")}
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(dst, partial)
    assert any(k.startswith("layer4") for k in load_checkpoint(dst, partial, strict=False).kept)


# ----------------------------------------------------------------------------- qijiezhao layout

# P3D-63 round-trips real values; the two 66M-parameter P3D-199 layouts run the same code on
# the meta device (keys and shapes only), which keeps this file fast on 2 CPU cores.
QIJIEZHAO = [("qijiezhao_p3d63_state_dict.json", "p3d", {"num_classes": 400}, "cpu"),
             ("qijiezhao_p3d199_state_dict.json", "p3d199", {}, "meta"),
             ("qijiezhao_p3d199_flow_state_dict.json", "p3d199_flow", {}, "meta")]


def _fabricate(keys, seed=0, device="cpu"):
    """Distinct values per key (cheaper than randn); shape-only tensors on the meta device."""
    if device == "meta":
        return {k: torch.empty(shape, device="meta") for k, shape in keys.items()}
    return {k: torch.arange(torch.Size(shape).numel(), dtype=torch.float32).add_(seed + 0.25 * i).reshape(shape)
            if shape else torch.tensor(7 + i) for i, (k, shape) in enumerate(keys.items())}


def _empty_model(name, device="cpu", **kw):
    with torch.device("meta"):
        model = create_model(name, **kw)
    return model if device == "meta" else model.to_empty(device=device)  # the strict load overwrites all


@pytest.mark.parametrize("json_name,arch,kw,device", QIJIEZHAO)
def test_qijiezhao_round_trip(json_name, arch, kw, device):
    ref = json.loads((REFERENCE / json_name).read_text())
    assert len(ref["keys"]) == ref["num_keys"]
    sd = _fabricate(ref["keys"], device=device)
    model = _empty_model(arch, device, **kw)
    assert count_params(model) == ref["num_params"]
    report = load_qijiezhao(model, {"state_dict": {f"module.{k}": v for k, v in sd.items()}})
    assert len(report.loaded) == len(sd) and not report.kept and not report.dropped
    out = export_qijiezhao(model)
    assert set(out) == set(ref["keys"])
    for k, shape in ref["keys"].items():
        assert list(out[k].shape) == shape, k
    if device == "meta":
        return
    for k in ref["keys"]:
        assert torch.equal(out[k], sd[k]), k
    torch.save({"state_dict": out}, io.BytesIO())  # exportable as the released files are
    # spot checks of the mapping itself
    assert torch.equal(model.conv1.weight, sd["conv1_custom.weight"])
    assert torch.equal(model.layer4[1].conv2.weight[:, :, 0], sd["layer4.1.conv_normal.weight"])
    assert torch.equal(model.layer3[0].conv3.weight, sd["layer3.0.conv3.weight"])


def test_qijiezhao_file_and_errors(tmp_path):
    ref = json.loads((REFERENCE / "qijiezhao_p3d63_state_dict.json").read_text())
    sd = _fabricate(ref["keys"], seed=1)
    path = tmp_path / "p3d63_kinetics.pth"
    torch.save({"state_dict": sd}, path)
    model = _empty_model("p3d", num_classes=400)
    assert str(load_qijiezhao(model, path)).startswith(f"loaded {len(sd)} tensors from {path}")
    # fine-tuning to 101 classes: fc dropped only when asked
    ucf = create_model("p3d", num_classes=101)
    with pytest.raises(CheckpointError, match=r"p3d63_kinetics.pth: shape mismatch at key 'fc.weight'"):
        load_qijiezhao(ucf, path)
    assert load_qijiezhao(ucf, path, drop_classifier=True).dropped == ["fc.weight", "fc.bias"]
    missing = {k: v for k, v in sd.items() if k != "layer2.1.bn3.running_var"}
    with pytest.raises(CheckpointError, match="first 'layer2.1.bn3.running_var'"):
        load_qijiezhao(model, missing)
    with pytest.raises(CheckpointError, match="layer4.0.conv3.weight"):
        load_qijiezhao(model, {**sd, "layer4.0.conv3.weight": torch.zeros(512, 512, 3, 1, 1)})
    with pytest.raises(ValueError, match="qijiezhao layout needs"):
        export_qijiezhao(create_model("resnet_tiny"))
