"""`p3d-bench-decode`: temporary delegate, replaced by the command itself during the redesign."""
from p3d_lightning.data.bench_decode import main  # noqa: F401

if __name__ == "__main__":
    raise SystemExit(main())
