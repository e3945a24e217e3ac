"""Shared helpers of the inspection tests: inspect_cases (tables and oracles)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # shared cases: inspect_cases
