"""``p3d-two-stream --rgb A --flow B``: late fusion of an RGB and a flow run's ``p3d predict``
outputs, printed as a video top-1 / top-5 table (:mod:`p3d_lightning.two_stream`)."""
from __future__ import annotations

import argparse
import json
from typing import Optional, Sequence

from p3d_lightning import two_stream
from p3d_lightning.two_stream import format_report, two_stream_report
from p3d_lightning.upstream_warnings import filter_upstream_warnings


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``p3d-two-stream``: fuse an RGB and a flow ``p3d predict`` output, print video top-1 of each."""
    filter_upstream_warnings()  # known-harmless upstream noise, by message (not ours)
    ap = argparse.ArgumentParser(prog="p3d-two-stream", description=two_stream.__doc__.split("\n\n")[0])
    ap.add_argument("--rgb", required=True, help="features file of the RGB run (p3d predict output)")
    ap.add_argument("--flow", required=True, help="features file of the flow run")
    ap.add_argument("--weights", type=float, nargs=2, default=(1.0, 1.0), metavar=("W_RGB", "W_FLOW"),
                    help="fusion weights (default 1 1)")
    ap.add_argument("--output", default=None, help="also write the report as JSON here")
    a = ap.parse_args(argv)
    try:
        report = two_stream_report(a.rgb, a.flow, a.weights)
    except (ValueError, FileNotFoundError) as err:
        ap.error(str(err))
    print(format_report(report))
    if a.output:
        with open(a.output, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
