"""The profiles' Docker images, built and run for real through the Docker CLI (podman behind the Docker
API where no Docker daemon runs, see images/engine.sh).

pipeline:cpu transcribes real speech offline (`--network none`) with the model baked into it, diarizes a real
two-speaker clip with the speaker models baked into it, and runs a batch on a local Ray inside the container.
pipeline:cuda is built (it shares every heavy layer with cpu) and run where there is no GPU: `--help`, and
the device resolution, which must explain that no CUDA device is visible and fall back to the CPU.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import jiwer
import pytest
from speakers import clips  # tests/speakers: the RTTM reader and the DER of the diarization suites

from pipeline.profiles import load_matrix
from pipeline.speakers import Turn

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
JFK = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
MATRIX = load_matrix(ROOT / "matrix" / "profiles.toml")
Run = subprocess.CompletedProcess[str]
# pyannote's 30 s two-speaker sample (from the pyannote-audio wheel) and its reference turns
SAMPLE = FIXTURES / "pyannote-sample.wav"
SAMPLE_RTTM = FIXTURES / "pyannote-sample.rttm"
# Ray keeps its object store in /dev/shm, 64 MB in a container unless given more: Ray's docs ask for more than 30 % of
# the memory (what its object store takes by default). A limit, not an allocation: tmpfs takes pages as written.
SHM = f"--shm-size={int(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') * 0.35) >> 20}m"

# Where no engine can be had, these tests fail (a skip would pass a run that tested no image); a run that means to
# leave images out deselects their tier (tests/conftest.py marks them `image`): `-m "not image"`, as make check does.
NO_ENGINE = (
    "the image tests need a Docker engine: run `make engine` (the running Docker daemon, or podman behind the Docker "
    "API; as root it installs podman), or leave the image tier out: pytest -m 'not image' (make check does)"
)


@pytest.fixture(scope="session")
def engine() -> dict[str, str]:
    """Environment for the docker CLI: images/engine.sh starts podman's Docker API if no daemon answers."""
    if shutil.which("docker") is None:
        pytest.fail(f"no `docker` command on PATH; {NO_ENGINE}", pytrace=False)
    result = subprocess.run([str(ROOT / "images" / "engine.sh")], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        why = " ".join(result.stderr.split()[-40:]) or f"images/engine.sh exited {result.returncode}"
        pytest.fail(f"no Docker engine ({why}); {NO_ENGINE}", pytrace=False)
    env = dict(os.environ)
    for line in result.stdout.splitlines():
        if line.startswith("export "):
            env.update(item.split("=", 1) for item in shlex.split(line[len("export ") :]))
    return env


def _build(profile: str, env: dict[str, str]) -> str:
    """Build the profile's image the way `make image` does; one build at a time across xdist workers."""
    lock = ROOT / "build" / "images" / ".build.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        result = subprocess.run(
            [str(ROOT / "images" / "build.sh"), profile],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=3600,
        )
    assert result.returncode == 0, f"images/build.sh {profile} failed:\n{result.stderr[-4000:]}"
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def cpu_image(engine: dict[str, str]) -> str:
    tag = _build("cpu", engine)
    assert tag == MATRIX.profile("cpu").ci.image
    return tag


@pytest.fixture(scope="session")
def cuda_image(engine: dict[str, str]) -> str:
    tag = _build("cuda", engine)
    assert tag == MATRIX.profile("cuda").ci.image
    return tag


def docker(env: dict[str, str], *args: str, timeout: float = 900) -> Run:
    return subprocess.run(["docker", *args], capture_output=True, text=True, env=env, timeout=timeout)


def docker_run(env: dict[str, str], *args: str, timeout: float = 900) -> Run:
    """`docker run`, removing the container afterwards itself: through podman's Docker API, `docker run --rm`
    exits 0 whatever the command did, so a test could not see a failure."""
    name = f"pipeline-test-{uuid.uuid4().hex[:12]}"
    try:
        return docker(env, "run", "--name", name, *args, timeout=timeout)
    finally:
        docker(env, "rm", "--force", name, timeout=120)


@pytest.fixture
def out(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "out"
    folder.mkdir()
    yield folder


def _transcribe(env: dict[str, str], image: str, out: Path, *extra: str, user: str | None = None) -> tuple[Run, str]:
    """As the images README says: no network, and the caller's uid (or `user`) for the files it writes."""
    mounts = ["-v", f"{FIXTURES}:/data:ro", "-v", f"{out}:/out"]
    result = docker_run(
        env,
        "--network",
        "none",
        "--user",
        user or f"{os.getuid()}:{os.getgid()}",
        *mounts,
        image,
        "transcribe",
        "/data/jfk.wav",
        "-s",
        "en",
        "--out",
        "/out",
        *extra,
    )
    assert result.returncode == 0, f"docker run {image} transcribe failed:\n{result.stderr[-3000:]}"
    [transcript] = out.rglob("jfk.en.txt")
    return result, transcript.read_text(encoding="utf-8")


def _wer(text: str) -> float:
    normalise = jiwer.Compose(
        [
            jiwer.ToLowerCase(),
            jiwer.RemovePunctuation(),
            jiwer.RemoveMultipleSpaces(),
            jiwer.Strip(),
            jiwer.ReduceToListOfListOfWords(),
        ]
    )
    return jiwer.wer(JFK, text, reference_transform=normalise, hypothesis_transform=normalise)


def test_cpu_image_transcribes_real_speech_offline(engine: dict[str, str], cpu_image: str, out: Path) -> None:
    profile = MATRIX.profile("cpu")
    _, text = _transcribe(engine, cpu_image, out)
    assert _wer(text) <= profile.threshold(profile.runtime.model, "transcribe_wer"), text
    [manifest] = out.rglob("manifest.json")
    asr = json.loads(manifest.read_text())["stages"]["transcribe"]
    assert (asr["backend"], asr["device"]) == (profile.runtime.backend, profile.runtime.device)
    # The manifest records what CTranslate2 actually ran: int8 on a CPU is int8 weights with float32 activations.
    assert asr["compute_type"].split("_")[0] == profile.runtime.compute_type, asr["compute_type"]


def test_cpu_image_runs_unprivileged_and_writes_as_the_callers_uid(
    engine: dict[str, str], cpu_image: str, out: Path
) -> None:
    """Root in the image would leave root-owned files in the user's folder; `--user` maps the caller's uid."""
    whoami = docker_run(engine, "--network", "none", "--entrypoint", "id", cpu_image, "-u")
    assert whoami.returncode == 0 and whoami.stdout.strip() != "0", whoami
    out.chmod(0o777)  # a folder the (arbitrary) uid below may write, as a user's own folder would be
    _transcribe(engine, cpu_image, out, user="4321:4321")
    written = [p for p in out.rglob("*")]
    assert written and {p.stat().st_uid for p in written} == {4321}, {str(p): p.stat().st_uid for p in written}


def test_cpu_image_help_and_entrypoint(engine: dict[str, str], cpu_image: str) -> None:
    result = docker_run(engine, "--network", "none", cpu_image, "--help")
    assert result.returncode == 0 and "transcribe" in result.stdout and "subtitle" in result.stdout
    # Exit codes come through (a one-line error is exit 2), or no assertion on one above could fail.
    missing = docker_run(engine, "--network", "none", cpu_image, "transcribe", "/no/such.wav", "-s", "en")
    assert missing.returncode == 2 and "pipeline: error:" in missing.stderr, missing
    listing = docker_run(engine, "--network", "none", cpu_image, "matrix", "list", "--names")
    assert listing.stdout.split() == list(MATRIX.profiles)


def test_cpu_image_keeps_no_build_inputs_or_local_ca(engine: dict[str, str], cpu_image: str) -> None:
    """The wheelhouse was only mounted, the project wheel removed; no index, proxy or local CA came along."""
    script = "ls /wheelhouse /tmp/dist; cat /etc/ssl/certs/ca-certificates.crt /etc/pip.conf; env"
    result = docker_run(engine, "--network", "none", "--entrypoint", "sh", cpu_image, "-c", script)
    assert "'/wheelhouse': No such file" in result.stderr and "'/tmp/dist': No such file" in result.stderr
    for name in ("PIP_CERT", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "REQUESTS_CA_BUNDLE"):
        assert name not in result.stdout
    for ca in Path("/usr/local/share/ca-certificates").glob("*.crt"):  # this machine's own CAs, if any
        body = [line for line in ca.read_text().splitlines() if line and "CERTIFICATE" not in line]
        assert body[0] not in result.stdout, f"{ca} is in the image"


def test_cuda_image_builds_and_falls_back_to_cpu_without_a_gpu(
    engine: dict[str, str], cuda_image: str, out: Path
) -> None:
    assert docker_run(engine, "--network", "none", cuda_image, "--help").returncode == 0
    inspect = docker(engine, "image", "inspect", "--format", "{{json .Config.Env}}", cuda_image).stdout
    assert '"PIPELINE_PROFILE=cuda"' in inspect and '"NVIDIA_VISIBLE_DEVICES=all"' in inspect
    # No GPU here: the cuda profile must say so and run on the CPU, with the bundled model (the profile's
    # large-v3 is the user's own).
    model = MATRIX.defaults["test_model"]
    result, text = _transcribe(engine, cuda_image, out, "--model", model)
    assert "no CUDA device is visible; running on the CPU" in result.stderr, result.stderr
    assert _wer(text) <= MATRIX.profile("cuda").threshold(model, "transcribe_wer"), text


def test_cpu_and_cuda_images_share_all_but_their_profile_layers(
    engine: dict[str, str], cpu_image: str, cuda_image: str
) -> None:
    def layers(image: str) -> list[str]:
        fmt = "{{range .RootFS.Layers}}{{println .}}{{end}}"
        return docker(engine, "image", "inspect", "--format", fmt, image).stdout.split()

    cpu, cuda = layers(cpu_image), layers(cuda_image)
    shared = [a for a, b in zip(cpu, cuda, strict=False) if a == b]
    # base, apt, venv+lock, dependencies, project, matrix, models: the same layers, stored once
    assert len(shared) == len(cpu) and cuda[: len(cpu)] == cpu, (cpu, cuda)


def _offline(*mounts: str) -> list[str]:
    """`docker run` options as the images README gives them: no network, the caller's uid, these mounts."""
    volumes = [arg for mount in mounts for arg in ("-v", mount)]
    return ["--network", "none", "--user", f"{os.getuid()}:{os.getgid()}", *volumes]


def _job_folders(out: Path) -> dict[str, Path]:
    """Each job folder under `out`, by its media file's name."""
    folders = {}
    for manifest in out.rglob("manifest.json"):
        folders[Path(json.loads(manifest.read_text())["media"]).name] = manifest.parent
    return folders


def test_cpu_image_subtitles_two_speakers_offline_with_its_own_speaker_models(
    engine: dict[str, str], cpu_image: str, out: Path
) -> None:
    """`--speakers auto` inside the image, network off, nothing mounted but the media and the output folder: the
    speaker models baked in at build time are found, checked and used, and the outputs carry the speakers."""
    installed = docker_run(engine, *_offline(), cpu_image, "models", "install", "speakers")
    assert installed.returncode == 0, installed.stderr  # already there (sha256-checked): nothing to fetch
    done = docker_run(
        engine,
        *_offline(f"{FIXTURES}:/data:ro", f"{out}:/out"),
        cpu_image,
        "subtitle",
        f"/data/{SAMPLE.name}",
        "-s",
        "en",
        "-t",
        "es",
        "--speakers",
        "auto",
        "--formats",
        "srt,vtt",
        "--out",
        "/out",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    folder = _job_folders(out)[SAMPLE.name]
    assert json.loads((folder / "manifest.json").read_text())["stages"]["speakers"]["speakers"] == 2
    found = json.loads((folder / "work" / "speakers.json").read_text())["turns"]
    turns = [Turn(t["start"], t["end"], t["speaker"]) for t in found]
    der = clips.der(clips.read_rttm(SAMPLE_RTTM), turns)
    assert der <= MATRIX.profile("cpu").threshold("speakers", "der_sample"), der
    for language in ("en", "es"):
        # SRT names nobody (the subtitling convention): a cue where the speaker changes leads each line with a dash.
        srt = (folder / f"{SAMPLE.stem}.{language}.srt").read_text(encoding="utf-8")
        dialogue = [cue for cue in srt.split("\n\n") if sum(line.startswith("- ") for line in cue.splitlines()) == 2]
        assert dialogue, srt
        vtt = (folder / f"{SAMPLE.stem}.{language}.vtt").read_text(encoding="utf-8")
        assert "<v Speaker 1>" in vtt and "<v Speaker 2>" in vtt, vtt


def test_cpu_image_runs_a_batch_on_a_local_ray(engine: dict[str, str], cpu_image: str, out: Path) -> None:
    """`pipeline batch` inside the container starts its own local Ray (no network, the caller's uid, /dev/shm as
    Ray asks) and runs two real clips to the end, one with speakers."""
    done = docker_run(
        engine,
        *_offline(f"{FIXTURES}:/data:ro", f"{out}:/out"),
        SHM,
        cpu_image,
        "batch",
        "/data/jfk.wav",
        f"/data/{SAMPLE.name}",
        "--workflow",
        "transcribe",
        "-s",
        "en",
        "--speakers",
        "auto",
        "--out",
        "/out",
        "--json",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "object store is using /tmp" not in done.stderr, done.stderr  # /dev/shm held it: SHM is enough
    table = {Path(row["file"]).name: row for row in json.loads(done.stdout)}
    assert set(table) == {"jfk.wav", SAMPLE.name}, table
    assert all(row["state"] == "done" and row["backend"] == "faster-whisper" for row in table.values()), table
    folders = _job_folders(out)
    segments = json.loads((folders["jfk.wav"] / "jfk.en.json").read_text())["segments"]
    text = " ".join(segment["text"] for segment in segments)
    profile = MATRIX.profile("cpu")
    assert _wer(text) <= profile.threshold(profile.runtime.model, "transcribe_wer"), text
    sample = json.loads((folders[SAMPLE.name] / "manifest.json").read_text())
    assert sample["stages"]["speakers"]["speakers"] == 2, sample["stages"]["speakers"]


_NODES = "import ray, sys; ray.init(sys.argv[1], log_to_driver=False); print(sum(n['Alive'] for n in ray.nodes()))"


def test_cpu_images_as_the_nodes_of_a_ray_cluster_run_a_batch_on_both(
    engine: dict[str, str], cpu_image: str, out: Path
) -> None:
    """images/README's cluster lines: a head and a worker node, each a container of the image (the host's network,
    a folder both see at the same path, as shared storage), and `pipeline batch --address` run on the head: one
    actor per node, each file's job on its own node, the outputs in the shared folder."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    common = ["--network", "host", SHM, "--user", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp"]
    common += ["-v", f"{FIXTURES}:{FIXTURES}:ro", "-v", f"{out}:{out}", "--entrypoint", "ray", cpu_image, "start"]
    names = [f"pipeline-test-{uuid.uuid4().hex[:12]}-{role}" for role in ("head", "worker")]
    try:
        roles = ([f"--port={address.split(':')[1]}", "--head"], [f"--address={address}"])
        for name, role in zip(names, roles, strict=True):
            started = docker(engine, "run", "-d", "--name", name, *common, *role, "--num-cpus=1", "--block")
            assert started.returncode == 0, started.stderr[-2000:]
        deadline, nodes = time.monotonic() + 120, ""
        while nodes != "2" and time.monotonic() < deadline:  # the worker node joins a few seconds after the head
            nodes = docker(engine, "exec", names[0], "python", "-c", _NODES, address).stdout.strip()[-1:]
        assert nodes == "2", docker(engine, "logs", names[1]).stderr[-2000:]
        files = [str(FIXTURES / "jfk.wav"), str(SAMPLE)]
        batch = ["pipeline", "batch", *files, "-w", "transcribe", "-s", "en", "--out", str(out), "--json"]
        ran = docker(engine, "exec", names[0], *batch, "--address", address)
        assert ran.returncode == 0, ran.stderr[-3000:]
        rows = json.loads(ran.stdout)
        assert [row["state"] for row in rows] == ["done", "done"], rows
        assert len({row["node"] for row in rows}) == 2, f"both jobs on one node: {rows}"
        assert set(_job_folders(out)) == {"jfk.wav", SAMPLE.name}
    finally:
        for name in reversed(names):
            docker(engine, "rm", "--force", name, timeout=120)
