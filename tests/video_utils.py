"""Test inputs written on the fly: frames whose every index is recognisable, a still image named
like a video, and a copy of a video with damaged bytes (shared by tests/data and tests/commands)."""

import numpy as np


def counter_frames(t=60, h=48, w=64, seed=0):
    """``t`` uint8 RGB frames ``(t, h, w, 3)``: a random texture rolled 3 px per frame, with a
    frame-counter patch in the top-left corner (so no two frames are alike)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = np.stack([np.roll(base, 3 * i, axis=1) for i in range(t)])
    out[:, :8, :8] = (np.arange(t) * 4 % 256)[:, None, None, None]  # frame counter patch
    return out


def write_png(path, h=48, w=64):
    """A real PNG (PyAV's image2 muxer), at whatever name ``path`` has (e.g. ``x.mp4``)."""
    import av

    with av.open(str(path), "w", format="image2") as c:
        s = c.add_stream("png")
        s.width, s.height, s.pix_fmt = w, h, "rgb24"
        for packet in s.encode(av.VideoFrame.from_ndarray(np.full((h, w, 3), 128, np.uint8), format="rgb24")):
            c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return str(path)


def corrupt_middle(src, dst, at=0.4, n=400):
    """Copy ``src`` with ``n`` bytes at ``at`` of its length zeroed: damaged frames, intact container."""
    data = bytearray(open(src, "rb").read())
    start = int(len(data) * at)
    data[start:start + n] = bytes(n)
    open(dst, "wb").write(bytes(data))
    return str(dst)
