"""data/contract.py: the input contract comes from the architecture's ModelCfg unless the config
overrides it, contradictions are named, and weights trained on other clips are refused."""
import pytest
import torch

from p3d_lightning.data.contract import check_pretrained_contract, contract_conflicts, resolve_input_contract


def test_contract_comes_from_the_model_table_unless_overridden():
    c = resolve_input_contract("p3d199")
    assert (c.modality, c.normalization, c.channel_order, c.mean, c.std) == \
        ("rgb", "caffe", "BGR", (104.0, 117.0, 123.0), (1.0, 1.0, 1.0))
    assert dict(c.source)["normalization"] == "ModelCfg(p3d199)" and dict(c.source)["mean"] == "ModelCfg(p3d199)"
    assert resolve_input_contract("p3d").normalization == "imagenet"
    assert resolve_input_contract(None).normalization == "imagenet"  # no architecture: the old default
    rgb = resolve_input_contract("p3d199", channel_order="RGB")  # same colour means, RGB order
    assert rgb.channel_order == "RGB" and rgb.mean == (123.0, 117.0, 104.0) and dict(rgb.source)["channel_order"] == "data"
    im = resolve_input_contract("p3d199", normalization="imagenet")
    assert im.channel_order == "RGB" and im.mean == (0.485, 0.456, 0.406)
    assert resolve_input_contract("p3d", mean=[0.5, 0.5, 0.5], std=[0.25] * 3).std == (0.25, 0.25, 0.25)
    flow = resolve_input_contract("p3d199_flow", in_channels=2)
    assert (flow.modality, flow.normalization, flow.channel_order, flow.mean) == ("flow", "caffe", "xy", (128.0, 128.0))
    tiny_flow = resolve_input_contract("p3d_tiny", modality="flow")
    assert (tiny_flow.in_channels, tiny_flow.normalization, tiny_flow.channel_order) == (2, "imagenet", "xy")
    with pytest.raises(ValueError, match=r"'p3d199_flow' is an optical-flow model .* set model.in_channels: 2"):
        resolve_input_contract("p3d199_flow", in_channels=3)
    with pytest.raises(ValueError, match=r"data.modality='flow' contradicts the network's 3 input channels"):
        resolve_input_contract("p3d", in_channels=3, modality="flow")
    with pytest.raises(ValueError, match="channel_order must be one of"):
        resolve_input_contract("p3d199", channel_order="bgr")


def test_pretrained_format_contradicting_the_normalisation_is_an_error(tmp_path):
    imagenet = resolve_input_contract("p3d199", normalization="imagenet")
    with pytest.raises(ValueError, match=r"pretrained_format='qijiezhao'.*normalization='caffe'.*"
                                         r"data.normalization='imagenet' \(data\)"):
        check_pretrained_contract("p3d_rgb_199.pth", "qijiezhao", imagenet)
    check_pretrained_contract("p3d_rgb_199.pth", "qijiezhao", resolve_input_contract("p3d199"))  # agrees
    with pytest.raises(ValueError, match=r"pretrained_format='imagenet'.*data.normalization='caffe'"):
        check_pretrained_contract("resnet50.pth", "imagenet", resolve_input_contract("p3d199"))
    check_pretrained_contract(None, "qijiezhao", imagenet)  # nothing to load
    # a Lightning checkpoint carries the contract it was trained with
    ckpt = tmp_path / "run.ckpt"
    torch.save({"state_dict": {}, "VideoDataModule": {"input_contract": imagenet.as_dict()}}, ckpt)
    check_pretrained_contract(str(ckpt), "lightning", imagenet)
    with pytest.raises(ValueError, match=r"normalization: 'imagenet' vs 'caffe'"):
        check_pretrained_contract(str(ckpt), "lightning", resolve_input_contract("p3d199"))
    assert contract_conflicts({"channel_order": "BGR"}, resolve_input_contract("p3d199", channel_order="RGB")) == \
        ["channel_order: 'BGR' vs 'RGB'"]
