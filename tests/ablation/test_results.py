"""results.csv: typed rows written as text only here, read back as numbers; clip shapes parsed once."""
import pytest

from p3d_lightning.ablation.results import (RESULT_FIELDS, as_cells, format_shape, is_frame_model, parse_shape,
                                            read_results, record, to_float, update_results, write_results)


def test_shapes_parse_and_frame_models():
    assert parse_shape("3x16x80x80") == (3, 16, 80, 80) == parse_shape([3, 16, 80, 80])
    assert parse_shape("") is None and parse_shape(None) is None
    assert format_shape((3, 1, 224, 224)) == "3x1x224x224"
    with pytest.raises(ValueError, match="clip shape"):
        parse_shape("3 by 16")
    assert is_frame_model({"clip_shape": "3x1x32x32"}) and is_frame_model({"clip_shape": (3, 1, 32, 32)})
    assert not is_frame_model({"clip_shape": "3x16x32x32"}) and not is_frame_model({})


def test_to_float():
    assert to_float("0.5") == 0.5 and to_float(3) == 3.0
    assert to_float("") is None and to_float(None) is None and to_float("nan") is None and to_float("x") is None


def test_typed_row_round_trips_as_numbers(tmp_path):
    path = tmp_path / "results.csv"
    row = {"model": "p3d", "arch": "p3d", "params": 1234567, "size_mb": 4.7094, "clip_shape": (3, 16, 32, 32),
           "video_acc1": 0.123456789, "infer_batch_size": 8, "infer_device": "cpu", "paper_scale_shape": None,
           "not_a_column": 1}
    write_results(path, [row])
    text = path.read_text()
    assert "3x16x32x32" in text and "0.123457" in text and "not_a_column" not in text
    [back] = read_results(path)
    assert list(back) == RESULT_FIELDS
    assert back["params"] == 1234567 and isinstance(back["params"], int)
    assert back["video_acc1"] == pytest.approx(0.123457) and back["infer_batch_size"] == 8
    assert back["clip_shape"] == "3x16x32x32" and back["infer_device"] == "cpu"
    assert back["paper_scale_shape"] == "" and back["paper_scale_clips_per_s"] is None
    write_results(path, [back])  # what was read writes back to the same file
    assert path.read_text() == text
    assert as_cells(row)["clip_shape"] == "3x16x32x32" and record(row)["clip_shape"] == "3x16x32x32"
    assert read_results(tmp_path / "missing.csv") == []


def test_update_results_replaces_the_model_and_sorts(tmp_path):
    path = tmp_path / "results.csv"
    update_results(path, {"model": "p3d", "video_acc1": 0.5})
    update_results(path, {"model": "resnet50", "video_acc1": 0.25})
    rows = update_results(path, {"model": "p3d", "video_acc1": 0.75})
    assert [(r["model"], r["video_acc1"]) for r in rows] == [("resnet50", 0.25), ("p3d", 0.75)]
    rows = update_results(path, order=["p3d", "resnet50"])
    assert [r["model"] for r in rows] == ["p3d", "resnet50"]
    assert not list(tmp_path.glob(".results.csv.*"))  # no temporary file left behind
