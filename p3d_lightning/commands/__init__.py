"""Console scripts: each file holds one command's parser and ``main()``; nothing in the library imports them.

| command | file |
| --- | --- |
| ``p3d`` (fit / validate / test / predict) | ``p3d.py`` |
| ``p3d-ablation`` | ``ablation.py`` |
| ``p3d-bench`` | ``bench.py`` |
| ``p3d-bench-decode`` | ``bench_decode.py`` |
| ``p3d-prep`` | ``prep.py`` |
| ``p3d-synth`` | ``synth.py`` |
| ``p3d-prescan`` | ``prescan.py`` |
| ``p3d-flow`` | ``flow.py`` |
| ``p3d-two-stream`` | ``two_stream.py`` |
| ``p3d-report`` (``clip-predictions``) | ``report.py`` |
"""
