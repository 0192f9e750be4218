"""Stage peak memory: a real child process the sampler never sees still counts, through the kernel's peak."""

from __future__ import annotations

import resource
import subprocess
import sys

import psutil

from pipeline.asr.protocol import peak_rss_mb
from pipeline.progress import PeakMemory

_ALLOCATE = "b = bytearray({mb} * 2**20); b[::4096] = b'x' * len(b[::4096])"  # touch every page


def test_a_short_child_counts_through_its_kernel_peak() -> None:
    # Bigger than any child this test process reaped before (the kernel keeps only the largest).
    mb = round(peak_rss_mb(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)) + 300
    with PeakMemory(interval=60) as memory:  # no sample falls while the child lives
        subprocess.run([sys.executable, "-c", _ALLOCATE.format(mb=mb)], check=True)
    assert memory.peak_mb > mb


def test_an_earlier_bigger_child_does_not_count_again() -> None:
    subprocess.run([sys.executable, "-c", _ALLOCATE.format(mb=600)], check=True)
    own_mb = psutil.Process().memory_info().rss / 2**20  # this test process: whatever earlier tests loaded
    with PeakMemory(interval=60) as memory:
        subprocess.run([sys.executable, "-c", _ALLOCATE.format(mb=50)], check=True)
    # Our own RSS and nothing of the 600 MB child that finished before the stage.
    assert memory.peak_mb < own_mb + 300
