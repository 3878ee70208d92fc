"""Transforms: shapes, one crop for every frame, flips, normalisation."""
import random

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
