"""Rows a stage refuses: kept with their reason, never dropped silently."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefsmith.schemas.io import write_table
from prefsmith.schemas.tables import QUARANTINE

RAW_LIMIT = 2000


@dataclass(frozen=True)
class Rejected:
    """One rejected input row. `reason` is a short key counted in the manifest."""

    row_ref: str
    reason: str
    detail: str
    raw: str = ""

    def as_row(self, stage: str) -> dict[str, str]:
        return {
            "stage": stage,
            "row_ref": self.row_ref,
            "reason": self.reason,
            "detail": self.detail,
            "raw": self.raw[:RAW_LIMIT],
        }


def write_quarantine(rejected: list[Rejected], path: str | Path, *, stage: str) -> Path:
    """Write the quarantine table (possibly empty, so its absence never means 'unknown')."""
    return write_table([r.as_row(stage) for r in rejected], path, QUARANTINE)
