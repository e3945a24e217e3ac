"""The curation tests share fixtures by module: test_pair_weights reuses test_import's rows and
test_pairs_stage's synthetic tables (the import mode is importlib, so the folder goes on the path)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
