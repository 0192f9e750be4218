"""The `.env.pipeline` file format: read verbatim (no `${VAR}` expansion), written so that python-dotenv reads every
value back as it was and `set -a; . .env.pipeline` in a shell runs nothing."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pipeline.errors import PipelineError


def read(path: Path) -> dict[str, str]:
    """KEY=value pairs of a dotenv file, verbatim: python-dotenv's parser (quoting, comments, `export`) without
    its `${VAR}` interpolation, which would expand the environment (secrets included) into file names and
    prompts. A line it cannot parse is an error naming the file and line, never a silent default."""
    from dotenv.parser import parse_stream

    try:
        # newline="": a "\r" inside a quoted value is part of the value, as the writer meant it.
        with open(path, encoding="utf-8", newline="") as stream:
            bindings = list(parse_stream(stream))
    except UnicodeDecodeError:
        raise PipelineError(f"config file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise PipelineError(f"cannot read config file {path}: {exc.strerror}") from None
    bad = [str(b.original.line) for b in bindings if b.error]
    if bad:
        raise PipelineError(
            f"config file {path}: cannot parse line {', '.join(bad)}; allowed: KEY=value, KEY='value', "
            'KEY="value" (a quote left open?)'
        )
    return {b.key: (b.value or "") for b in bindings if b.key is not None}


def check_text(value: str) -> str | None:
    """Why `value` cannot be a config value (None if it can): it must be writable to a UTF-8 job file and be
    a valid file name part (no NUL)."""
    if "\0" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # surrogate-escaped bytes from a non-UTF-8 argument or file name
        return "is not valid UTF-8 text"
    return None


def shown(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # show the undecodable bytes as bytes: b'/m/\xff.wav'
        return repr(value.encode("utf-8", "surrogateescape"))
    return repr(value)


def quote(name: str, value: str) -> str:
    """`value` quoted so that python-dotenv reads it back verbatim and `set -a; . .env.pipeline` in bash is
    harmless (no command substitution, no expansion) and, where bash can hold it, gives the same value.

    Single quotes are literal in bash; python-dotenv decodes a backslash pair and backslash-quote inside them.
    Double quotes with every backslash and quote escaped are read alike by both unless the value has `$` or a
    backtick, which bash would expand. A value needing both (a ' or a backslash pair, and $ or a backtick) has
    no such form."""
    if "'" not in value and "\\\\" not in value and not value.endswith("\\"):
        return f"'{value}'"
    if "$" not in value and "`" not in value:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise PipelineError(
        f"{name}={shown(value)} cannot be written to a job file safely (it has both a quote or backslash and "
        "a $ or backtick, which a shell sourcing .env.pipeline would run); allowed: values without that mix "
        "(rename the file or reword the value)"
    )


def render(values: Mapping[str, str], header: str = "") -> str:
    """A `.env.pipeline` file holding `values` in their order (a PipelineError if one cannot be written safely)."""
    lines = [f"# {line}" for line in header.splitlines()] if header else []
    lines += [f"{name}={quote(name, value)}" for name, value in values.items()]
    return "\n".join(lines) + "\n"
