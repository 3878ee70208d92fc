"""Transforms: shapes, one crop for every frame, flips, normalisation."""
import random

import pytest
import torch

from p3d_lightning.data.transforms import ClipTransform, center_crop_params, normalize


def _clip(t=4, h=20, w=30):
    # every frame identical, pixel values encode position: crops are easy to locate
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    frame = torch.stack([yy, xx, (yy + xx) % 256], -1).to(torch.uint8)
    return frame.expand(t, h, w, 3).clone()


def test_train_same_crop_across_frames_and_shape():
    clip = _clip()
    tf = ClipTransform(train=True, crop_size=16, horizontal_flip=True)
    for s in range(20):
        out = tf(clip, random.Random(s))
        assert out.shape == (3, 4, 16, 16) and out.dtype == torch.float32
        assert all(torch.equal(out[:, 0], out[:, i]) for i in range(4))
    outs = {tuple(tf(clip, random.Random(s))[:, 0, 0, 0].tolist()) for s in range(30)}
    assert len(outs) > 3  # crops/flips vary with the rng
    assert torch.equal(tf(clip, random.Random(5)), tf(clip, random.Random(5)))


def test_flip_only_when_enabled():
    clip = _clip(h=16, w=16)
    no_flip = ClipTransform(True, 16, horizontal_flip=False, normalization="caffe")
    flip = ClipTransform(True, 16, horizontal_flip=True, normalization="caffe")
    ref = no_flip(clip, random.Random(0))
    flipped = [flip(clip, random.Random(s)) for s in range(20)]
    assert all(torch.equal(o, ref) or torch.equal(o, ref.flip(-1)) for o in flipped)
    assert any(torch.equal(o, ref.flip(-1)) for o in flipped)
    assert all(torch.equal(no_flip(clip, random.Random(s)), ref) for s in range(5))


def test_eval_centre_crop():
    clip = _clip()
    out = ClipTransform(False, 16, normalization="caffe")(clip)
    top, left = center_crop_params(20, 30, 16)
    # caffe: BGR order, minus mean; channel 2 of output is R = y coordinate
    assert out[2, 0, 0, 0].item() == top - 123.0 and out[1, 0, 0, 0].item() == left - 117.0


def test_normalisation():
    x = torch.full((1, 2, 2, 3), 255, dtype=torch.uint8)
    x[..., 1] = 0
    im = normalize(x, "imagenet")
    assert im.shape == (3, 1, 2, 2)
    assert torch.allclose(im[:, 0, 0, 0], torch.tensor([(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (1 - 0.406) / 0.225]))
    caffe = normalize(x, "caffe")  # BGR, 0-255 minus (104, 117, 123)
    assert torch.allclose(caffe[:, 0, 0, 0], torch.tensor([255 - 104.0, 0 - 117.0, 255 - 123.0]))


def test_small_frames_upscaled_to_crop():
    out = ClipTransform(False, 32)(_clip(h=20, w=30))
    assert out.shape == (3, 4, 32, 32)


def test_channel_order_is_explicit():
    x = torch.zeros((1, 1, 1, 3), dtype=torch.uint8)
    x[..., 0], x[..., 1], x[..., 2] = 200, 100, 50  # decoded R, G, B
    bgr = normalize(x, "caffe")[:, 0, 0, 0]
    assert torch.equal(bgr, torch.tensor([50 - 104.0, 100 - 117.0, 200 - 123.0]))
    assert torch.equal(normalize(x, "caffe", "BGR")[:, 0, 0, 0], bgr)
    rgb = normalize(x, "caffe", "RGB")[:, 0, 0, 0]  # same means per colour, RGB order
    assert torch.equal(rgb, torch.tensor([200 - 123.0, 100 - 117.0, 50 - 104.0]))
    assert torch.equal(normalize(x, "imagenet", "BGR")[:, 0, 0, 0], normalize(x, "imagenet")[:, 0, 0, 0].flip(0))
    custom = normalize(x, "caffe", "RGB", mean=(10, 20, 30), std=(2, 2, 2))[:, 0, 0, 0]
    assert torch.equal(custom, torch.tensor([95.0, 40.0, 10.0]))
    with pytest.raises(ValueError, match="channel_order must be one of"):
        normalize(x, "caffe", "GBR")
    with pytest.raises(ValueError, match="normalization must be one of"):
        ClipTransform(False, 1, normalization="bgr")


def test_flow_normalisation_and_flip():
    flow = torch.zeros((2, 4, 4, 2), dtype=torch.uint8)
    flow[..., 0] = torch.arange(4, dtype=torch.uint8) * 60  # x varies along the width
    flow[..., 1] = 128
    out = normalize(flow, "caffe")  # minus 128, x/y order kept
    assert out.shape == (2, 2, 4, 4)
    assert torch.equal(out[0, 0, 0], torch.tensor([-128.0, -68.0, -8.0, 52.0])) and torch.all(out[1] == 0)
    assert torch.allclose(normalize(flow, "imagenet")[1], torch.zeros(2, 4, 4))  # [0, 1] minus 128/255
    with pytest.raises(ValueError, match="'xy'"):
        normalize(flow, "caffe", "RGB")
    tf = ClipTransform(True, 4, horizontal_flip=True, normalization="caffe", in_channels=2)
    outs = [tf(flow, random.Random(s)) for s in range(20)]
    flipped = [o for o in outs if not torch.equal(o, out)]
    assert flipped and len(flipped) < 20
    # mirrored: columns reversed and x motion negated around 128 (255 - x - 128 = 127 - x)
    assert torch.equal(flipped[0][0, 0, 0], torch.tensor([127 - 180.0, 127 - 120.0, 127 - 60.0, 127.0]))
    assert torch.equal(flipped[0][1], out[1])
    with pytest.raises(ValueError, match="expects 2-channel clips"):
        tf(torch.zeros((2, 4, 4, 3), dtype=torch.uint8))
