"""`p3d-prep`: temporary delegate, replaced by the command itself during the redesign."""
from p3d_lightning.data.prep import main  # noqa: F401

if __name__ == "__main__":
    raise SystemExit(main())
