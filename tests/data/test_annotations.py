"""Annotation parsing for UCF101, HMDB51, Kinetics CSV and class folders (0-based labels)."""
import os

import pytest

from p3d_lightning.data.annotations import (load_annotations, parse_folder, parse_hmdb51, parse_kinetics,
                                            parse_ucf101)


def _touch(p):
    os.makedirs(os.path.dirname(p), exist_ok=True)
    open(p, "wb").close()


def test_ucf101(tmp_path):
    root, lists = tmp_path / "UCF-101", tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 HandstandPushups\n")
    (lists / "trainlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"
                                           "HandstandPushups/v_HandStandPushups_g08_c01.avi 2\n")
    (lists / "testlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\n"
                                          "HandstandPushups/v_HandStandPushups_g01_c01.avi\n")
    _touch(str(root / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01.avi"))
    _touch(str(root / "HandstandPushups" / "v_HandstandPushups_g08_c01.avi"))  # case differs on disk
    root.mkdir(exist_ok=True)
    ann = parse_ucf101(str(root), split=1)  # finds ../ucfTrainTestlist
    assert ann.classes == ["ApplyEyeMakeup", "HandstandPushups"]
    assert [r.label for r in ann.train] == [0, 1] and [r.label for r in ann.test] == [0, 1]
    assert os.path.isfile(ann.train[1].path)  # case-insensitive resolution
    assert ann.test[0].video_id == "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"
    with pytest.raises(FileNotFoundError, match="trainlist02.txt"):
        parse_ucf101(str(root), split=2)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        parse_ucf101(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="split"):
        parse_ucf101(str(root), split=4)
    (lists / "trainlist01.txt").write_text("ApplyEyeMakeup/x.avi 7\n")
    with pytest.raises(ValueError, match=r"trainlist01.txt:1"):
        parse_ucf101(str(root), split=1)


def test_hmdb51(tmp_path):
    root, splits = tmp_path / "hmdb51", tmp_path / "hmdb51" / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    (splits / "brush_hair_test_split1.txt").write_text("a.avi 1 \nb.avi 2 \nc.avi 0 \n")
    (splits / "cartwheel_test_split1.txt").write_text("d.avi 2 \ne.avi 1 \n")
    (splits / "cartwheel_test_split2.txt").write_text("d.avi 1 \n")
    ann = parse_hmdb51(str(root), split=1)
    assert ann.classes == ["brush_hair", "cartwheel"]
    assert [(r.video_id, r.label) for r in ann.train] == [("brush_hair/a.avi", 0), ("cartwheel/e.avi", 1)]
    assert [(r.video_id, r.label) for r in ann.test] == [("brush_hair/b.avi", 0), ("cartwheel/d.avi", 1)]
    with pytest.raises(FileNotFoundError, match="_test_split3.txt"):
        parse_hmdb51(str(root), split=3)


def test_kinetics(tmp_path):
    root = tmp_path / "k400"
    (root / "train" / "abseiling").mkdir(parents=True)
    header = "label,youtube_id,time_start,time_end,split\n"
    (root / "train.csv").write_text(header + "abseiling,abc,10,20,train\nzumba,xyz,0,10,train\n")
    (root / "validate.csv").write_text(header + "zumba,qqq,5,15,val\n")
    _touch(str(root / "train" / "abseiling" / "abc_000010_000020.mp4"))
    _touch(str(root / "val" / "qqq_000005_000015.mkv"))
    ann = parse_kinetics(str(root))
    assert ann.classes == ["abseiling", "zumba"]
    assert [r.label for r in ann.train] == [0, 1] and ann.test[0].label == 1
    assert os.path.isfile(ann.train[0].path) and ann.test[0].path.endswith(".mkv")
    assert not os.path.exists(ann.train[1].path)  # absent: left for the index to report
    (root / "validate.csv").write_text(header + "bogus,qqq,5,15,val\n")
    with pytest.raises(ValueError, match="validate.csv:2"):
        parse_kinetics(str(root))
    os.remove(root / "validate.csv")
    with pytest.raises(FileNotFoundError, match="val.csv"):
        parse_kinetics(str(root))


def test_folder(tmp_path):
    for c in ("b_cls", "a_cls"):
        for i in range(5):
            _touch(str(tmp_path / "flat" / c / f"v{i}.mp4"))
    ann = parse_folder(str(tmp_path / "flat"))
    assert ann.classes == ["a_cls", "b_cls"]
    assert len(ann.train) == 8 and len(ann.test) == 2
    assert {r.label for r in ann.test} == {0, 1}
    for split in ("train", "val"):
        _touch(str(tmp_path / "split" / split / "cat" / "x.avi"))
    _touch(str(tmp_path / "split" / "train" / "dog" / "y.avi"))
    ann = load_annotations("folder", str(tmp_path / "split"))
    assert ann.classes == ["cat", "dog"] and len(ann.train) == 2 and ann.test[0].video_id == "val/cat/x.avi"
    with pytest.raises(ValueError, match="dataset must be one of"):
        load_annotations("imagenet", str(tmp_path))
