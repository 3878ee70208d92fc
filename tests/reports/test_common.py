"""Tests of :mod:`p3d_lightning.reports.common` (the notebooks' parameters)."""

from __future__ import annotations

import pytest

from p3d_lightning import reports


def test_env_parameters(monkeypatch):
    monkeypatch.delenv("P3D_TEST_MAP", raising=False)
    assert reports.env_mapping("P3D_TEST_MAP", {"a": "1"}) == {"a": "1"}
    monkeypatch.setenv("P3D_TEST_MAP", "resnet50=/x/r.pt, p3d=/x/p.pt")
    assert reports.env_mapping("P3D_TEST_MAP", {}) == {"resnet50": "/x/r.pt", "p3d": "/x/p.pt"}
    monkeypatch.setenv("P3D_TEST_MAP", "nonsense")
    with pytest.raises(ValueError, match="P3D_TEST_MAP"):
        reports.env_mapping("P3D_TEST_MAP", {})
    monkeypatch.setenv("P3D_TEST_PATH", "/tmp/x")
    assert str(reports.env_path("P3D_TEST_PATH", "d")) == "/tmp/x"
