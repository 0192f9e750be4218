"""The one exception type a user sees: a one-line message naming what was wrong and what is allowed."""

from __future__ import annotations


class PipelineError(Exception):
    """A problem the user can fix. The CLI prints `pipeline: <message>` and exits with `exit_code`."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        # Keep messages to one line whatever the caller passed: scripts grep them, terminals wrap them.
        super().__init__(" ".join(str(message).split()))


class StageFailed(PipelineError):
    """A stage ran and failed; the job stays resumable from that stage."""

    exit_code = 1
