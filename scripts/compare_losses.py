#!/usr/bin/env python
"""The loss study: `fst compare` under its script name (same options, same exit codes).

    python scripts/compare_losses.py --styles sample:starry_night sample:the_scream --out runs/study
    python scripts/compare_losses.py --calibrate --out runs/calib      # registry weights, no training
    python scripts/compare_losses.py --help

See fst/study/command.py and docs/loss_study.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fst.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
