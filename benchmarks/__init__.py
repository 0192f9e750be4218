"""Benchmarks: the pipeline's speed and memory as ratios against peers run side by side on the same machine.

`python -m benchmarks [--quick] [--only NAME]`; see benchmarks/README.md for what each one compares and the
latest figures. Absolute seconds depend on the machine and on whatever else runs on it; the ratios of runs
alternated A/B/A/B in fresh processes are what these benchmarks are for.
"""
