"""fst.core.host_memory: freed blocks are reused, so allocating an activation again costs no page faults."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the setting exists for glibc only")

# Allocates and frees a 64 MB tensor (above glibc's largest mmap threshold, like a 256² activation
# at batch 4) ten times and counts the page faults that took, after a first round that warms up.
CHURN = """
import json, resource, sys, torch
{setup}
def churn():
    for _ in range(10):
        t = torch.ones(16 * 2 ** 20)
        del t
churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn()
print(json.dumps({{"done": done, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}}))
"""
KEEP = "from fst.core.host_memory import keep_freed_memory\ndone = keep_freed_memory()"
NOTHING = "done = None"
# fst's Trainer on the CPU: the setting comes with it.
TRAINER = "from fst.training.trainer import Trainer\nTrainer(accelerator='cpu', logger=False, enable_progress_bar=False)\ndone = 'trainer'"
PAGES_PER_TENSOR = 16 * 2 ** 20 * 4 // 4096


def churn(setup: str, **env: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHURN.format(setup=setup)], capture_output=True, text=True,
                         timeout=120, env={**os.environ, **env}, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_without_the_setting_every_allocation_faults_its_pages_in_again() -> None:
    # The premise: glibc maps and unmaps each block, so ten allocations cost ten tensors of faults.
    assert churn(NOTHING)["faults"] > 5 * PAGES_PER_TENSOR


def test_kept_memory_is_reused_without_page_faults() -> None:
    result = churn(KEEP)
    assert result["done"] and "glibc" in result["done"]
    assert result["faults"] < PAGES_PER_TENSOR / 10


def test_fst_malloc_default_keeps_glibc_as_it_is() -> None:
    result = churn(KEEP, FST_MALLOC="default")
    assert result["done"] is None
    assert result["faults"] > 5 * PAGES_PER_TENSOR


def test_a_cpu_trainer_keeps_freed_memory() -> None:
    assert churn(TRAINER)["faults"] < PAGES_PER_TENSOR / 10


def test_memory_given_back_leaves_the_process_again() -> None:
    # What fst stylize does once memory is short: each freed block is unmapped again (its pages
    # fault back in), so a block no later request fits in is not a hole held against a limit.
    result = churn(KEEP + "\nfrom fst.core.host_memory import give_back_freed_memory\ndone = give_back_freed_memory()")
    assert result["done"] is True
    assert result["faults"] > 5 * PAGES_PER_TENSOR
