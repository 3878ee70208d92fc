"""`p3d-bench`: temporary delegate, replaced by the command itself during the redesign."""
from p3d_lightning.benchmark import main  # noqa: F401

if __name__ == "__main__":
    raise SystemExit(main())
