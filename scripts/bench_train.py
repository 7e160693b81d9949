#!/usr/bin/env python
"""Training throughput (images/s) of one full step: transformer forward, VGG16 on output and photo,
content + Gram style + TV loss, backward, Adam step. Variants: fp32 eager, bf16 autocast,
channels_last, torch.compile, and combinations; on CUDA also fp16 autocast; fp32 and bf16 with the
temporal-stability term (model.temporal_weight > 0) added.

The first variant is the classic step, the baseline every other is divided by: Johnson et al. as
the common PyTorch example trains it (fp32, NCHW, eager; Gram MSE on relu1_2..relu4_3, content MSE
at relu2_2; the photo's VGG pass runs to relu4_3 like the output's, though only relu2_2 is used).
fst's own steps stop the photo's pass at the content layer and, on a CPU, run the transformer's
output conv in channels_last (fst.models.transformer); "fp32 eager, NCHW throughout" leaves that out.

On a CPU the classic step runs first, with glibc's malloc as it comes; every later variant runs with
freed memory kept for reuse (fst.core.host_memory), as `fst fit` and `fst stylize` run on a CPU. The
variant "classic step, freed memory kept" separates that gain from the rest.
``FST_MALLOC=default`` keeps glibc's malloc as it comes for all variants.

An AVX2-only CPU can be imitated on one with AVX-512 by limiting oneDNN, ATen and Inductor's code:
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 TORCHINDUCTOR_CPP_MARCH=x86-64-v3 FST_CPU_BF16=0

All variants run in one process, on the same photos, one after the other, so they compare fairly.

    python scripts/bench_train.py [--device cpu|cuda] [--size 256] [--batch 4] [--steps 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from fst.assets import sample_photos_dir
from fst.core.errors import first_line
from fst.core.host_memory import keep_freed_memory
from fst.io.images import open_rgb
from fst.losses.criterion import flat
from fst.study.runs import load_recipe
from fst.training.module import StyleTransferModule

CLASSIC = "classic step (fp32 eager)"
CLASSIC_KEPT = "classic step, freed memory kept"
CLASSICS = (CLASSIC, CLASSIC_KEPT)
ALL_NCHW = "fp32 eager, NCHW throughout"  # fst's step without its channels_last output conv
CLASSIC_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "classic.yaml"
VARIANTS = {  # name -> (autocast dtype or None, channels_last, compile)
    CLASSIC: (None, False, False),
    CLASSIC_KEPT: (None, False, False),
    ALL_NCHW: (None, False, False),
    "fp32 eager": (None, False, False),
    "bf16 autocast": (torch.bfloat16, False, False),
    "channels_last": (None, True, False),
    "torch.compile": (None, False, True),
    "channels_last + compile": (None, True, True),
    "bf16 + channels_last": (torch.bfloat16, True, False),
    "bf16 + channels_last + compile": (torch.bfloat16, True, True),
}
# The same steps with the temporal-stability term (fst/losses/temporal.py): one more transformer pass.
TEMPORAL = {"fp32 eager + temporal term": (None, False, False), "bf16 autocast + temporal term": (torch.bfloat16, False, False)}
VARIANTS.update(TEMPORAL)
CPU_ONLY = (CLASSIC_KEPT, ALL_NCHW)  # the settings they leave out apply to the CPU only
CUDA_ONLY = {"fp16 autocast + channels_last": (torch.float16, True, False),
             "fp16 + channels_last + compile": (torch.float16, True, True)}


def machine(device: str) -> str:
    if device == "cuda":
        return f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    return f"CPU {platform.machine()} ({os.cpu_count()} cores), torch {torch.__version__}"


def photos(n: int, size: int, device: str) -> torch.Tensor:
    files = sorted(sample_photos_dir().glob("*.jpg"))[:n]
    return torch.stack([TF.to_tensor(TF.center_crop(TF.resize(open_rgb(f), size), size)) for f in files]).to(device)


def classic_total(module: StyleTransferModule, x: torch.Tensor) -> torch.Tensor:
    """The classic objective: both VGG passes to relu4_3, absolute MSE terms, no TV."""
    c = module.criterion
    y = module(x)
    fy, fx = c.vgg(y), c.vgg(x)
    content = F.mse_loss(fy[c.content_layer], fx[c.content_layer])
    style = sum(c.loss(flat(fy[layer]), c.targets.stats(0, layer)).mean() for layer in c.style_layers)
    return c.content_weight * content + c.style_weight * style


def make_module(name: str, channels_last: bool, compile_: bool) -> StyleTransferModule:
    if name in CLASSICS:  # configs/classic.yaml's model section, as `fst compare --baselines` reads it
        module = StyleTransferModule(style_size=256, **load_recipe(CLASSIC_CONFIG))
    else:
        module = StyleTransferModule(style_loss="gram", style_size=256, channels_last=channels_last, compile=compile_)
    # The classic recipe runs every layer NCHW; fst runs its output conv in channels_last on the CPU.
    module.transformer.cpu_channels_last_out = name not in (*CLASSICS, ALL_NCHW)
    return module


def measure(name: str, spec: tuple, x: torch.Tensor, steps: int, warmup: int) -> float:
    dtype, channels_last, compile_ = spec
    device = x.device.type
    torch.manual_seed(0)
    module = make_module(name, channels_last, compile_)
    module.to(device)
    module.criterion.add_style(x[:1])  # statistics of one photo: timing does not depend on the painting
    opt = module.configure_optimizers()
    amp = torch.autocast(device, dtype=dtype) if dtype is not None else nullcontext()
    scaler = torch.amp.GradScaler(device) if dtype == torch.float16 else None

    def step() -> None:
        with amp:
            if name in CLASSICS:
                total = classic_total(module, x)
            else:
                y, terms = module.stylize_and_score(x)
                total = terms["total"] + (module.temporal_term(x, y, None) if name in TEMPORAL else 0)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(total).backward()
            scaler.step(opt)
            scaler.update()
        else:
            total.backward()
            opt.step()

    for _ in range(warmup):  # first steps pay for allocation, cudnn autotuning, compilation
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return x.shape[0] * steps / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=3, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--only", nargs="*", help="run only these variants")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    variants = {**VARIANTS, **(CUDA_ONLY if args.device == "cuda" else {})}
    if args.device == "cuda":
        variants = {k: v for k, v in variants.items() if k not in CPU_ONLY}
    if args.only:
        variants = {k: v for k, v in variants.items() if k in args.only}
    x = photos(args.batch, args.size, args.device)
    results = {}
    kept = None
    for name, spec in variants.items():
        if args.device == "cpu" and name != CLASSIC:  # the classic step runs as its recipe runs it
            kept = keep_freed_memory()
        try:
            results[name] = measure(name, spec, x, args.steps, args.warmup)
        except Exception as e:  # noqa: BLE001 - a variant that cannot run here is reported, not fatal
            results[name] = None
            print(f"{name}: failed: {type(e).__name__}: {first_line(e)[:200]}")
        print(f"{name}: {results[name] or float('nan'):.2f} img/s", flush=True)
    base = results.get(CLASSIC)
    print(f"\nTraining step, {args.size}², batch {args.batch}, gram loss, VGG16 relu1_2..relu4_3; "
          f"{machine(args.device)}; {datetime.date.today()}; {args.steps} timed steps after {args.warmup} warm-up; "
          f"after the classic step: {kept or 'malloc as it comes'}\n")
    print("| variant | images/s | × classic step |\n|---|---:|---:|")
    for name, ips in results.items():
        rel = f"{ips / base:.2f}" if ips and base else "–"
        print(f"| {name} | {ips:.2f} | {rel} |" if ips else f"| {name} | failed | – |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(args.device), "size": args.size, "batch": args.batch, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
