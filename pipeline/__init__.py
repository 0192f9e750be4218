"""pipeline: offline transcripts, translations and subtitles for your own media, on your own hardware.

    from pipeline import prepare, run, status
    job_id, folder = prepare("talk.mp4", {"WORKFLOW": "subtitle", "SOURCE_LANGUAGE": "en", "TARGET_LANGUAGES": "es"})
    run(job_id)

Importing this package loads no ML library: backends are imported inside their worker processes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Config", "PipelineError", "prepare", "run", "status"]

if TYPE_CHECKING:
    __version__: str
    from pipeline.config import Config
    from pipeline.errors import PipelineError
    from pipeline.workflow import prepare, run, status


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read when asked: importlib.metadata scans the installed distributions
        import importlib.metadata

        try:  # one version, pyproject.toml's, as installed; a bare checkout on the path has none to read
            return importlib.metadata.version("pipeline")
        except importlib.metadata.PackageNotFoundError:
            return "0+unknown"
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
