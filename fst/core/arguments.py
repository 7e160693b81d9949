"""The argument parser of every fst command: a usage error is one line and exit 2, like every other
error (argparse's own prints the usage block and exits from inside the parser)."""

from __future__ import annotations

import argparse

from fst.core.errors import FstError


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors become `FstError`s, which `fst.cli` prints as one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise FstError(message)
