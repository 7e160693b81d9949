#!/usr/bin/env python
"""One-shot stylizer: `python scripts/stylize.py INPUT... --model MODEL --out OUT` == `fst stylize ...`.

Works from a source checkout without installing fst (the repo root is put on sys.path).
See `fst/stylize/command.py` for the options.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fst.cli import main  # noqa: E402  (after the sys.path line on purpose)

if __name__ == "__main__":
    sys.exit(main(["stylize", *sys.argv[1:]]))
