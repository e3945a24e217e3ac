"""Boolean flags read as flags in `--help`: no `<bool>` beside `--verbose`, `--help` and the rest.

Typer 0.29 prints an option's type in the help's type column for every option, flags included,
so `--schema-only <bool>` reads as if it took a value (`--schema-only true`), which it does not.
`plain_flags` makes a flag's type column empty (an explicit `metavar` still shows). It is applied
once, when the CLI module is imported, before any help is rendered.
"""

from __future__ import annotations

from typer.core import TyperOption

_PATCHED = "_prefsmith_plain_flags"


def plain_flags() -> None:
    """Hide the `<bool>` type of every flag option in rich help (idempotent)."""
    original = TyperOption.display_type_rich
    if getattr(original, _PATCHED, False):
        return

    def display_type_rich(self, ctx):
        if self.is_flag and self.metavar is None:
            return None  # typer's help renders no type text for None
        return original(self, ctx)

    setattr(display_type_rich, _PATCHED, True)
    TyperOption.display_type_rich = display_type_rich
