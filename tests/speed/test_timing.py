"""The one timing loop shared by inference, training and the ceiling."""
import pytest
import torch

from p3d_lightning.speed.timing import time_calls


def test_time_calls_counts_warmup_then_timed_calls():
    calls = []
    timing = time_calls(calls.append, torch.device("cpu"), warmup=2, repeats=3)
    assert calls == [0, 1, 2, 3, 4]  # every call numbered, warm-up first
    assert len(timing.times) == 3 and all(t >= 0 for t in timing.times)
    assert timing.minor_faults >= 0 and timing.faults_per_call >= 0


def test_time_calls_budget_stops_after_two_timed_calls():
    calls = []
    timing = time_calls(calls.append, torch.device("cpu"), warmup=0, repeats=100, max_seconds=0.0)
    assert len(timing.times) == 2 and calls == [0, 1]


def test_time_calls_rejects_no_repeats():
    with pytest.raises(ValueError, match="repeats"):
        time_calls(lambda i: None, torch.device("cpu"), warmup=0, repeats=0)
