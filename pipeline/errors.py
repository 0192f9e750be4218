"""The one exception type a user sees: a one-line message naming what was wrong and what is allowed."""

from __future__ import annotations


class PipelineError(Exception):
    """A problem the user can fix. The CLI prints `pipeline: <message>` and exits with `exit_code`.

    Raised inside a job's stage it also says whether a resume can help: `resumable=False` for a failure no
    re-run fixes (a truncated input), `fix` for what must change first ("free some disk space")."""

    exit_code = 2

    def __init__(self, message: str, *, resumable: bool = True, fix: str | None = None) -> None:
        # Keep messages to one line whatever the caller passed: scripts grep them, terminals wrap them.
        super().__init__(" ".join(str(message).split()))
        self.resumable = resumable
        self.fix = fix


class StageFailed(PipelineError):
    """A stage ran and failed; the job stays resumable from that stage."""

    exit_code = 1


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP stopped a job's run; carries the job id for the resume advice."""

    def __init__(self, job_id: str, signal_name: str = "") -> None:
        super().__init__(signal_name)
        self.job_id = job_id
