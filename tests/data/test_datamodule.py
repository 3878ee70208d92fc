"""VideoDataModule: synthetic generation in prepare_data, batches from every loader (with
workers), num_classes check, missing paths, quarantine, per-epoch clips under a Trainer, the
input contract read from the trainer's model, and one-decode evaluation loaders equal to the
per-clip ones."""
import warnings
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from p3d_lightning.data.datamodule import VideoDataModule
from p3d_lightning.data.contract import resolve_input_contract
from p3d_lightning.data.dataset import EpochSampler
from training_utils import tiny_datamodule


def _dm(root, **kw):
    args = dict(dataset="synthetic", root=str(root), num_classes=4, clip_len=4, frame_stride=2, resize=(40, 52),
                crop_size=32, num_eval_clips=3, batch_size=4, eval_batch_size=6, num_workers=0, seed=1,
                synthetic_generate=True, synthetic_num_pairs=2, synthetic_videos_per_class=4, synthetic_clips_per_group=2,
                synthetic_size=(48, 64),
                synthetic_num_frames=16, progress=False)
    args.update(kw)
    return VideoDataModule(**args)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("dm") / "synthetic"
    dm = _dm(root)
    assert not root.exists()  # no disk access in __init__
    dm.prepare_data()
    assert (root / "classInd.txt").is_file() and (root / ".p3d_index.json").is_file()
    return root


def test_batches_from_every_loader(root):
    dm = _dm(root, num_workers=2, persistent_workers=True)
    dm.setup("fit")
    assert dm.classes == ["MoveRight", "MoveLeft", "RotateClockwise", "RotateAnticlockwise"]
    assert dm.horizontal_flip is False  # synthetic default: flipping would swap direction classes
    assert dm.num_skipped == 0
    loaders = {"train": dm.train_dataloader(), "val": dm.val_dataloader()}
    assert isinstance(loaders["train"].sampler, EpochSampler)
    dm.num_workers = 0  # the remaining loaders in-process (keeps the test fast)
    loaders.update(test=dm.test_dataloader(), predict=dm.predict_dataloader())
    for name, loader in loaders.items():
        batch = next(iter(loader))
        n = 4 if name == "train" else 6
        assert batch["clip"].shape == (n, 3, 4, 32, 32) and batch["clip"].dtype == torch.float32, name
        for key in ("label", "video_idx", "clip_idx"):
            assert batch[key].shape == (n,) and batch[key].dtype == torch.long, (name, key)
        if name != "train":
            assert batch["clip_idx"].tolist() == [0, 1, 2, 0, 1, 2]
            assert batch["video_idx"].tolist() == [0, 0, 0, 1, 1, 1]
    assert len(dm.val_dataset) == 3 * 8 and len(dm.train_dataset) == 8


def test_num_classes_checked(root):
    with pytest.raises(ValueError, match=r"num_classes=5 .*classInd.txt.* 4 classes"):
        _dm(root, num_classes=5).setup()


def test_missing_paths_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        VideoDataModule(dataset="ucf101", root=str(tmp_path / "nowhere"), num_classes=101).setup()
    (tmp_path / "ucf").mkdir()
    with pytest.raises(FileNotFoundError, match="classInd.txt"):
        VideoDataModule(dataset="ucf101", root=str(tmp_path / "ucf"), num_classes=101).setup()
    (tmp_path / "folder" / "cls").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="q.txt"):
        VideoDataModule(dataset="folder", root=str(tmp_path / "folder"), num_classes=1,
                        quarantine_file=str(tmp_path / "q.txt")).setup()


def test_flip_warning_and_validation(root):
    with pytest.warns(UserWarning, match="horizontal_flip"):
        assert _dm(root, horizontal_flip=True).horizontal_flip is True
    assert VideoDataModule(dataset="ucf101", root="x", num_classes=101).horizontal_flip is True
    with pytest.raises(ValueError, match="normalization"):
        _dm(root, normalization="bgr")


def test_quarantine_file_honoured(root, tmp_path):
    q = tmp_path / "q.txt"
    q.write_text("# comment\nMoveLeft/v_MoveLeft_g01_c01.avi\tbad\n")
    dm = _dm(root, quarantine_file=str(q))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        dm.setup()
    assert dm.num_skipped == 1 and dm.skipped[0][0].endswith("v_MoveLeft_g01_c01.avi")


class _Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 4)
        self.seen = []

    def training_step(self, batch, batch_idx):
        self.seen.append(self.trainer.datamodule.train_dataset.epoch)
        return torch.nn.functional.cross_entropy(self.fc(batch["clip"].mean((2, 3, 4))), batch["label"])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_sets_epoch(root):
    dm, model = _dm(root), _Tiny()
    trainer = pl.Trainer(max_epochs=3, limit_train_batches=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0, accelerator="cpu")
    trainer.fit(model, datamodule=dm)
    assert model.seen == [0, 1, 2]


def test_persistent_workers_draw_new_clips_every_epoch(root):
    """Persistent workers (the default) see set_epoch: each epoch's batches equal the in-process ones."""
    def epoch_batches(num_workers, epochs=2):
        dm = _dm(root, num_workers=num_workers, persistent_workers=True)
        dm.setup("fit")
        loader = dm.train_dataloader()
        assert loader.persistent_workers == (num_workers > 0)
        out = []
        for epoch in range(epochs):
            loader.sampler.set_epoch(epoch)  # what Lightning does at every epoch start
            out.append(torch.cat([b["clip"] for b in loader]))
        return out

    in_process = epoch_batches(0)
    with_workers = epoch_batches(1)
    assert not torch.equal(in_process[0], in_process[1])  # new clips and crops each epoch
    for epoch in range(2):
        assert torch.equal(with_workers[epoch], in_process[epoch]), epoch
    assert VideoDataModule(dataset="synthetic", root=str(root), num_classes=4).persistent_workers is True


def test_predict_split_selects_the_videos_predict_covers(root):
    def ids(dm):
        dm.setup("predict")
        return {v.video_id for v in dm.predict_dataset.videos}

    test_ids = ids(_dm(root))
    train_ids = ids(_dm(root, predict_split="train"))
    all_ids = ids(_dm(root, predict_split="all"))
    assert test_ids and train_ids and not (test_ids & train_ids)
    assert all_ids == test_ids | train_ids
    dm = _dm(root, predict_split="train")
    dm.setup("predict")
    assert len(dm.predict_dataset) == 3 * len(train_ids)  # evaluation clips, not one random clip
    batch = next(iter(dm.predict_dataloader()))
    assert batch["clip_idx"].tolist() == [0, 1, 2, 0, 1, 2]
    with pytest.raises(ValueError, match="predict_split"):
        _dm(root, predict_split="val")


def test_a_video_broken_after_setup_is_substituted_in_training_only(root, tmp_path):
    """Training keeps going on a substitute clip; val/test/predict mark the clip invalid instead."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    dm = _dm(copy)
    dm.setup()
    path = dm.train_dataset.videos[0].path
    assert path not in {v.path for v in dm.val_dataset.videos}
    test_path = dm.val_dataset.videos[0].path
    for p in (path, test_path):
        open(p, "wb").close()
    with pytest.warns(UserWarning, match="failed to decode"):
        s = dm.train_dataset[0]
        batch = next(iter(dm.val_dataloader()))
    assert s["valid"] and s["video_idx"] == 1 and s["label"] == dm.train_dataset.videos[1].label
    assert batch["valid"].tolist() == [False, False, False, True, True, True]
    assert batch["video_idx"].tolist() == [0, 0, 0, 1, 1, 1]
    assert batch["label"][0] == dm.val_dataset.videos[0].label
    assert {p for p, _ in dm.decode_failures()} == {path, test_path}


def test_datamodule_reads_the_contract_from_the_trainer_model(root):
    fake_model = SimpleNamespace(hparams={"arch": "p3d199", "pretrained": "w.pth", "pretrained_format": "qijiezhao"},
                                 model=SimpleNamespace(in_channels=3))
    dm = _dm(root, num_classes=4)
    dm.trainer = SimpleNamespace(lightning_module=fake_model, ckpt_path=None, logger=None)
    dm.setup("test")
    c = dm.input_contract
    assert (c.normalization, c.channel_order, c.arch) == ("caffe", "BGR", "p3d199")
    assert dm.test_dataset.transform.normalization == "caffe" and dm.test_dataset.transform.mean == (104.0, 117.0, 123.0)
    assert dm.state_dict() == {"input_contract": c.as_dict()}
    dm.load_state_dict(dm.state_dict())  # the same contract restores
    with pytest.raises(ValueError, match=r"another input contract.*normalization: 'imagenet' vs 'caffe'"):
        dm.load_state_dict({"input_contract": resolve_input_contract("p3d").as_dict()})
    # the released weights with an explicit imagenet normalisation: refused, naming both
    bad = _dm(root, num_classes=4, normalization="imagenet")
    bad.trainer = SimpleNamespace(lightning_module=fake_model, ckpt_path=None, logger=None)
    with pytest.raises(ValueError, match=r"model.pretrained_format='qijiezhao' \(model.pretrained=w.pth\).*"
                                         r"data.normalization='imagenet'"):
        bad.setup("test")
    with pytest.raises(ValueError, match=r"data.model_cfg='p3d' but model.arch='p3d199'"):
        _dm(root, model_cfg="p3d").resolve_input_contract(fake_model)
    assert _dm(root, model_cfg="p3d199").resolve_input_contract().normalization == "caffe"  # without a trainer
    with pytest.raises(ValueError, match="unknown model 'p3dx'"):
        _dm(root, model_cfg="p3dx")


def test_test_stage_needs_no_training_videos(root, tmp_path):
    import shutil

    lone = tmp_path / "lone"
    shutil.copytree(root, lone)
    (lone / "trainlist01.txt").write_text("")
    dm = _dm(lone)
    dm.setup("test")
    assert len(dm.test_dataset) > 0 and len(dm.train_dataset) == 0
    with pytest.raises(RuntimeError, match="no readable train videos"):
        dm.train_dataloader()
    with pytest.raises(RuntimeError, match="no readable train videos"):
        _dm(lone).setup("fit")


def _cat(batches):
    return {k: torch.cat([b[k] for b in batches]) for k in batches[0]}


def test_video_loader_equals_per_clip_loader(tiny_synthetic_root):
    per_clip = tiny_datamodule(str(tiny_synthetic_root), num_eval_clips=3, batch_size=4, eval_decode="clip")
    per_video = tiny_datamodule(str(tiny_synthetic_root), num_eval_clips=3, batch_size=7, eval_decode="video")
    for dm in (per_clip, per_video):
        dm.setup("fit")
    a = _cat(list(per_clip.val_dataloader()))
    loader = per_video.val_dataloader()
    batches = list(loader)
    assert len(loader.dataset) == 8 and len(batches) == 4  # 7 // 3 = 2 videos (6 clips) per batch
    assert [b["clip"].shape[0] for b in batches] == [6, 6, 6, 6]
    b = _cat(batches)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    with pytest.raises(ValueError, match="eval_decode"):
        tiny_datamodule(str(tiny_synthetic_root), eval_decode="frames")
