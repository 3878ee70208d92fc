"""`p3d-flow`: temporary delegate, replaced by the command itself during the redesign."""
from p3d_lightning.data.flow import main  # noqa: F401

if __name__ == "__main__":
    raise SystemExit(main())
