"""Pack a trained universal network for shipping: its weights and fst metadata only (no optimizer state).

    python scripts/pack_universal.py runs/universal/checkpoints/last.ckpt --out fst/assets/models/universal.ckpt

The checkpoint is read as data (fst.artefacts.universal_checkpoint) and written atomically.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from fst.artefacts.universal_checkpoint import payload, universal_from_checkpoint
from fst.io.files import atomic_path
from fst.io.targets import check_outputs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    check_outputs([args.out], [args.checkpoint])
    net, meta = universal_from_checkpoint(args.checkpoint)
    keep = {k: meta[k] for k in ("global_step", "precision") if k in meta}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        torch.save(payload(net, **keep), tmp)
    print(f"{args.out}: {sum(p.numel() for p in net.parameters())} parameters, step {meta['global_step']}, "
          f"{args.out.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
