"""Fixed places the tests read: the repository, its shipped configs and the shared reference files."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
EXPERIMENTS = REPO / "experiments"
SNAPSHOTS = TESTS / "snapshots"
REFERENCE = REPO.parent / "shared" / "reference"
