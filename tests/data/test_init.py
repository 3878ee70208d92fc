"""p3d_lightning.data imports its names on first use: the data commands start without torch or
Lightning, and every exported name (FlowClipDataset included) still resolves."""
import subprocess
import sys

import pytest

import p3d_lightning.data as data


def test_data_commands_do_not_import_lightning():
    """p3d-synth / p3d-prescan start in well under a second of imports: no Lightning, no torch."""
    code = ("import sys, p3d_lightning.commands.synth, p3d_lightning.commands.prescan, p3d_lightning.data.synthetic, "
            "p3d_lightning.data.prescan, p3d_lightning.data; "
            "print('pytorch_lightning' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False", out
    from p3d_lightning.data import VideoDataModule  # still importable from the package, lazily

    assert VideoDataModule.__name__ == "VideoDataModule"


def test_every_exported_name_resolves():
    for name in data.__all__:
        value = getattr(data, name)
        assert not callable(value) or value.__name__ == name, name  # the object itself, not a stand-in
    from p3d_lightning.data import FlowClipDataset, VideoClipDataset

    assert issubclass(FlowClipDataset, VideoClipDataset) and "FlowClipDataset" in data.__all__
    assert data.decode.read_clips is not None and "decode" in dir(data)  # submodules as attributes too
    with pytest.raises(AttributeError, match="no_such_name"):
        data.no_such_name
