"""Tests for p3d_lightning.models.complexity: parameters, fp32 size and GMACs per clip."""
import pytest
import torch

from p3d_lightning.models import count_params, create_model, model_complexity


def _meta(name, **kw):
    with torch.device("meta"):
        return create_model(name, **kw)


@pytest.mark.parametrize("name", ["p3d_a", "p3d_b", "p3d_c", "p3d"])
def test_p3d50_gmacs_match_the_paper(name):
    stats = model_complexity(_meta(name), (3, 16, 160, 160))
    assert stats["gmacs"] == pytest.approx(8.44, rel=0.02)
    assert stats["params"] == 25_132_581
    assert stats["size_mb"] == pytest.approx(25_132_581 * 4 / 2**20)


def test_resnet50_per_frame():
    stats = model_complexity(_meta("resnet50"), (3, 1, 224, 224))
    assert stats["params"] == 23_714_981
    assert stats["gmacs"] == pytest.approx(3.86, rel=0.02)  # ResNet-50 at 224: ~4.1 GMACs minus the 1000-way fc
    # MiB convention: 90.5 / 95.9 vs the paper's 92 / 98 MB (10**6 bytes would give 94.9 / 100.5)
    assert stats["size_mb"] == pytest.approx(90.47, abs=0.01)
    assert model_complexity(_meta("p3d"))["size_mb"] == pytest.approx(95.87, abs=0.01)


def test_real_model_is_untouched_and_counts_match():
    model = create_model("p3d_tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = model_complexity(model, (3, 16, 32, 32))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(p.is_meta for p in model.parameters()) and model.training
    assert stats["params"] == count_params(model) and stats["gmacs"] > 0
    # GMACs scale with the input: 4x the pixels -> ~4x the MACs (the fc is negligible)
    big = model_complexity(model, (3, 16, 64, 64))["gmacs"]
    assert big == pytest.approx(4 * stats["gmacs"], rel=0.05)


def test_bad_input_shape():
    with pytest.raises(ValueError, match=r"\(C, T, H, W\)"):
        model_complexity(_meta("p3d_tiny"), (1, 3, 16, 32, 32))
