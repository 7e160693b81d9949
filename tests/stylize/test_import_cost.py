"""What `fst stylize` imports: torchvision pulls torch._dynamo in with it (through torchvision.ops), as
long to import as torch itself, and stylizing needs neither; training and the universal network's
VGG do not take this path."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torchvision", "torch._dynamo", "pytorch_lightning", "lightning", "cv2", "onnxruntime", "tensorboard")


def test_the_stylize_command_imports_none_of_the_heavy_packages() -> None:
    code = ("import sys, fst.cli, fst.stylize.command, fst.stylize.image, fst.io.style_images; "
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == ""
