"""workers_needed: from measured pipeline rates to a worker count."""

from p3d_lightning.speed.pipeline import workers_needed


def test_workers_needed():
    rows = [{"num_workers": 0, "clips_per_s": 10.0}, {"num_workers": 1, "clips_per_s": 9.0},
            {"num_workers": 2, "clips_per_s": 18.0}]
    assert workers_needed(5, rows) == 0
    assert workers_needed(15, rows) == 2
    assert workers_needed(40, rows) == 4  # extrapolated: best per-worker rate 10
    assert workers_needed(5, []) is None
