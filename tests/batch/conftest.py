"""Fixtures of the batch tests (tests/batch/harness.py): short real clips, and no Ray process left behind."""

from .harness import clips, no_ray_left  # noqa: F401 (pytest finds fixtures by name)
