"""`p3d-two-stream`: temporary delegate, replaced by the command itself during the redesign."""
from p3d_lightning.two_stream import main  # noqa: F401

if __name__ == "__main__":
    raise SystemExit(main())
