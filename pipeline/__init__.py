"""pipeline: offline transcripts, translations and subtitles for your own media, on your own hardware.

    from pipeline import prepare, run, status
    job_id, folder = prepare("talk.mp4", {"WORKFLOW": "subtitle", "SOURCE_LANGUAGE": "en", "TARGET_LANGUAGES": "es"})
    run(job_id)

Importing this package loads no ML library: backends are imported inside their worker processes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Config", "PipelineError", "prepare", "run", "status"]

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.errors import PipelineError
    from pipeline.workflow import prepare, run, status


def __getattr__(name: str) -> Any:
    if name == "Config":
        from pipeline.config import Config

        return Config
    if name == "PipelineError":
        from pipeline.errors import PipelineError

        return PipelineError
    if name in ("prepare", "run", "status"):
        from pipeline import workflow

        return getattr(workflow, name)
    raise AttributeError(name)
