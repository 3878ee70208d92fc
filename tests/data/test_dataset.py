"""VideoClipDataset: sample layout, seeding per (seed, epoch, index), and every bad-input case."""
import os
import shutil
import warnings

import numpy as np
import pytest
import torch

from p3d_lightning.data.annotations import VideoRecord, parse_ucf101
from p3d_lightning.data.container import DecodeError, scan_frames
from p3d_lightning.data.dataset import BadVideoWarning, EpochSampler, VideoClipDataset
from p3d_lightning.data.decode import read_all_frames
from p3d_lightning.data.encode import write_video
from p3d_lightning.data.synthetic import generate_synthetic_dataset
from p3d_lightning.data.transforms import ClipTransform
from training_utils import tiny_datamodule
from video_utils import corrupt_middle, counter_frames, write_png


@pytest.fixture(scope="module")
def ann(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("ds") / "synthetic")
    generate_synthetic_dataset(root, num_pairs=1, videos_per_class=4, clips_per_group=2, size=(48, 64),
                               num_frames=20, num_workers=1, progress=False)
    return parse_ucf101(root, 1)


def _ds(ann, records=None, **kw):
    kw.setdefault("train", False)
    kw.setdefault("transform", ClipTransform(kw["train"], 32, horizontal_flip=False))
    return VideoClipDataset(records if records is not None else ann.test, ann.classes, clip_len=8, **kw)


def test_eval_samples(ann):
    ds = _ds(ann, num_clips=3)
    assert len(ds) == 3 * len(ann.test) and ds.num_skipped == 0
    s = ds[4]
    assert s["clip"].shape == (3, 8, 32, 32) and s["clip"].dtype == torch.float32
    assert (s["video_idx"], s["clip_idx"], s["label"]) == (1, 1, ann.test[1].label)
    assert ds.frame_indices(3) == list(range(0, 8)) and ds.frame_indices(5) == list(range(12, 20))
    # the clip is the right frames of the video, centre-cropped
    full = read_all_frames(ann.test[1].path)[ds.frame_indices(4)]
    ref = ClipTransform(False, 32, False)(full)
    assert torch.equal(s["clip"], ref)


def test_train_seeding(ann):
    a = _ds(ann, ann.train, train=True, seed=7, num_clips=5)
    b = _ds(ann, ann.train, train=True, seed=7)
    assert len(a) == len(ann.train)  # one clip per video per epoch
    assert a[1]["clip_idx"] == 0
    assert all(torch.equal(a[i]["clip"], b[i]["clip"]) for i in range(len(a)))  # same (seed, epoch, index)
    epoch0 = [a.frame_indices(i)[0] for i in range(len(a))]
    starts = set()
    for e in range(8):
        a.set_epoch(e)
        starts.add(tuple(a.frame_indices(i)[0] for i in range(len(a))))
    assert len(starts) > 1  # new clips every epoch
    a.set_epoch(0)
    assert [a.frame_indices(i)[0] for i in range(len(a))] == epoch0  # resume-safe
    sampler = EpochSampler(a, seed=0)
    sampler.set_epoch(3)
    assert a.epoch == 3 and sorted(sampler) == list(range(len(a)))


def _bad_files(tmp_path, good):
    data = open(good, "rb").read()
    (tmp_path / "empty.avi").write_bytes(b"")
    (tmp_path / "trunc.avi").write_bytes(data[: len(data) // 2])
    (tmp_path / "corrupt.avi").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (tmp_path / "notes.avi").write_text("not a video")
    names = ["absent.avi", "empty.avi", "trunc.avi", "corrupt.avi", "notes.avi"]
    return [VideoRecord(n, str(tmp_path / n), 0) for n in names]


def test_bad_videos_skipped_with_one_warning_each(ann, tmp_path):
    bad = _bad_files(tmp_path, ann.test[0].path)
    with pytest.warns(BadVideoWarning) as rec:
        ds = _ds(ann, list(ann.test) + bad, num_clips=1)
    assert ds.num_skipped == 5 and len(ds.videos) == len(ann.test)
    assert sorted(os.path.basename(p) for p, _ in ds.skipped) == sorted(r.video_id for r in bad)
    msgs = [str(w.message) for w in rec if issubclass(w.category, BadVideoWarning)]
    assert len(msgs) == 5 and all(any(r.path in m for m in msgs) for r in bad)
    assert ds[len(ds) - 1]["clip"].shape == (3, 8, 32, 32)


@pytest.mark.parametrize("name", ["absent.avi", "empty.avi", "trunc.avi", "corrupt.avi", "notes.avi"])
def test_strict_mode_names_the_file(ann, tmp_path, name):
    bad = [r for r in _bad_files(tmp_path, ann.test[0].path) if r.video_id == name]
    with pytest.raises(DecodeError, match=name):
        _ds(ann, list(ann.test) + bad, strict=True)


def test_quarantine(ann):
    with pytest.warns(BadVideoWarning, match="quarantined"):
        ds = _ds(ann, quarantine=[ann.test[0].path])
    assert ds.skipped == [(ann.test[0].path, "quarantined")]


def _copies(ann, tmp_path, n=3):
    import shutil

    recs = []
    for r in ann.test[:n]:
        dst = tmp_path / os.path.basename(r.path)
        shutil.copy(r.path, dst)
        recs.append(VideoRecord(r.video_id, str(dst), r.label))
    return recs


def test_decode_failure_in_training_substitutes(ann, tmp_path):
    recs = _copies(ann, tmp_path)
    log = tmp_path / "failures.txt"
    ds = _ds(ann, recs, train=True, failure_log=str(log))
    strict = _ds(ann, recs, train=True, strict=True)
    assert ds.on_decode_error == "substitute" and strict.on_decode_error == "raise"
    open(recs[1].path, "wb").close()  # breaks after indexing, as a disk error would
    with pytest.warns(BadVideoWarning, match="failed to decode.*another video"):
        s = ds[1]  # video 1 -> substitute: video 2
    assert (s["video_idx"], s["clip_idx"], s["label"], s["valid"]) == (2, 0, recs[2].label, True)
    assert torch.equal(s["clip"], ds[2]["clip"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per file
        ds[1]
    assert recs[1].path in ds.runtime_failures and recs[1].path in log.read_text()
    with pytest.raises(DecodeError, match=os.path.basename(recs[1].path)):
        strict[1]


def test_decode_failure_in_evaluation_marks_the_clip_invalid(ann, tmp_path):
    recs = _copies(ann, tmp_path)
    log = tmp_path / "failures.txt"
    ds = _ds(ann, recs, num_clips=2, failure_log=str(log))
    sub = _ds(ann, recs, num_clips=2, on_decode_error="substitute")  # the old behaviour, on request
    strict = _ds(ann, recs, num_clips=2, strict=True)
    assert ds.on_decode_error == "mark_invalid"
    good = [ds[i] for i in range(len(ds))]
    open(recs[1].path, "wb").close()
    with pytest.warns(BadVideoWarning, match="failed to decode.*marked invalid"):
        s = ds[3]  # video 1, clip 1: no substitute, its own ids and label
    assert (s["video_idx"], s["clip_idx"], s["label"], s["valid"]) == (1, 1, recs[1].label, False)
    assert s["clip"].shape == good[3]["clip"].shape and s["clip"].dtype == torch.float32
    assert not s["clip"].any()
    assert recs[1].path in ds.runtime_failures and recs[1].path in log.read_text()
    # every other sample is unchanged, and a batch across the failure collates with a mask
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=len(ds))))
    assert batch["valid"].dtype == torch.bool and batch["valid"].tolist() == [True, True, False, False, True, True]
    assert batch["video_idx"].tolist() == [0, 0, 1, 1, 2, 2] and batch["clip_idx"].tolist() == [0, 1] * 3
    for i in (0, 1, 4, 5):
        assert torch.equal(batch["clip"][i], good[i]["clip"]), i
    with pytest.warns(BadVideoWarning, match="another video"):
        assert (sub[3]["video_idx"], sub[3]["valid"]) == (2, True)
    with pytest.raises(DecodeError, match=os.path.basename(recs[1].path)):
        strict[3]
    with pytest.raises(ValueError, match="on_decode_error"):
        _ds(ann, recs, on_decode_error="skip")


# ----------------------------------------------------------------------------- strict + quarantine, images, corrupt frames


def test_strict_mode_skips_quarantined_files(ann, tmp_path):
    """"p3d-prescan, then train strict": the quarantine list is honoured, other bad files still raise."""
    bad = _bad_files(tmp_path, ann.test[0].path)
    quarantined = [r.path for r in bad]
    with pytest.warns(BadVideoWarning, match="quarantined"):
        ds = _ds(ann, list(ann.test) + bad, strict=True, quarantine=quarantined)
    assert len(ds.videos) == len(ann.test) and sorted(ds.skipped) == sorted((p, "quarantined") for p in quarantined)
    with pytest.raises(DecodeError, match="notes.avi.*strict mode"):
        _ds(ann, list(ann.test) + bad, strict=True, quarantine=quarantined[:-1])


def _png_as_mp4(tmp_path):
    return VideoRecord("still.mp4", write_png(tmp_path / "still.mp4"), 0)


def test_image_renamed_as_video_is_skipped_once(ann, tmp_path):
    png = _png_as_mp4(tmp_path)
    with pytest.warns(BadVideoWarning) as rec:
        ds = _ds(ann, list(ann.test) + [png], num_clips=1)
    msgs = [str(w.message) for w in rec if issubclass(w.category, BadVideoWarning)]
    assert len(msgs) == 1 and png.path in msgs[0] and "an image file" in msgs[0]
    assert [p for p, _ in ds.skipped] == [png.path] and len(ds.videos) == len(ann.test)
    with pytest.raises(DecodeError, match=r"still\.mp4.*an image file"):
        _ds(ann, list(ann.test) + [png], strict=True)


def _corrupt_video(tmp_path):
    """A 40-frame video (PyAV, keyframe every 12) with damaged bytes in the middle; returns its record
    and the indices of its corrupt frames."""
    clean = str(tmp_path / "clean.avi")
    write_video(clean, counter_frames(t=40), codec="mpeg4", gop_size=12)
    bad = corrupt_middle(clean, tmp_path / "damaged.avi")
    corrupt = scan_frames(bad).corrupt
    assert corrupt, "the damage did not hit a frame"
    return VideoRecord("damaged.avi", bad, 1), corrupt


def test_corrupt_frames_in_evaluation_mark_the_hit_clips_invalid(ann, tmp_path):
    rec, corrupt = _corrupt_video(tmp_path)
    log = tmp_path / "failures.txt"
    ds = _ds(ann, list(ann.test[:2]) + [rec], num_clips=5, failure_log=str(log))  # indexing sees nothing wrong
    assert ds.num_skipped == 0
    with pytest.warns(BadVideoWarning) as w:
        samples = [ds[i] for i in range(len(ds))]
    named = [str(m.message) for m in w if rec.path in str(m.message)]
    assert len(named) == 1 and "corrupt" in named[0]  # named once, however many clips it spoils
    valid = {(s["video_idx"], s["clip_idx"]): s["valid"] for s in samples}
    assert all(valid[(v, c)] for v in (0, 1) for c in range(5))
    hit = [c for c in range(5) if not valid[(2, c)]]
    assert hit, "no clip of the damaged video was flagged"
    assert log.read_text().count(rec.path) == 1
    with pytest.raises(DecodeError, match=r"damaged\.avi.*corrupt"):
        strict = _ds(ann, [rec], num_clips=5, strict=True)
        [strict[i] for i in range(len(strict))]


def test_corrupt_frames_in_training_are_substituted_and_named_once(ann, tmp_path):
    rec, _ = _corrupt_video(tmp_path)
    recs = list(ann.test[:2]) + [rec]
    ds = _ds(ann, recs, train=True, failure_log=str(tmp_path / "failures.txt"))
    messages = []
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        for epoch in range(12):
            ds.set_epoch(epoch)
            s = ds[2]
            assert s["valid"] and s["clip"].shape == (3, 8, 32, 32)
        messages = [str(m.message) for m in w if issubclass(m.category, BadVideoWarning)]
    assert rec.path in ds.runtime_failures, "no training clip touched the corrupt frames in 12 epochs"
    assert len(messages) == 1 and rec.path in messages[0] and "another video" in messages[0]


def test_runtime_failure_named_once_across_workers(ann, tmp_path):
    """DataLoader workers each hold a copy of the dataset; the failure log makes the warning once per run."""
    import copy

    rec, _ = _corrupt_video(tmp_path)
    log = tmp_path / "failures.txt"
    log.write_text(f"{rec.path}\tfrom an earlier run\n")  # earlier runs do not silence this one
    ds = _ds(ann, [rec], num_clips=5, failure_log=str(log))
    workers = [copy.deepcopy(ds), copy.deepcopy(ds)]
    counts = []
    for worker in workers:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            flags = [worker[i]["valid"] for i in range(len(worker))]
        counts.append(sum(rec.path in str(m.message) for m in w))
        assert not all(flags)
    assert counts == [1, 0]
    assert log.read_text().count(rec.path) == 2  # the earlier run's line and this run's one


def test_broken_video_falls_back_to_per_clip_handling(tiny_synthetic_root, tmp_path):
    """One decode per video (``load_video``): a file broken mid-run still gets per-clip handling."""
    root = tmp_path / "copy"
    shutil.copytree(tiny_synthetic_root, root)
    dm = tiny_datamodule(str(root), num_eval_clips=3)
    dm.setup("fit")
    ds = dm.val_dataset
    open(ds.videos[1].path, "wb").close()  # broken after indexing
    with pytest.warns(UserWarning, match="failed to decode"):
        item = ds.load_video(1)
    assert item["valid"].tolist() == [False] * 3 and item["clip_idx"].tolist() == [0, 1, 2]
    assert item["video_idx"].tolist() == [1, 1, 1] and item["clip"].abs().sum() == 0
    assert ds.load_video(0)["valid"].all()
    with pytest.raises(ValueError, match="evaluation"):
        dm.train_dataset.load_video(0)
