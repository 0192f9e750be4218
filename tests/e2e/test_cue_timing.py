"""E2E: subtitle cues start and end with the speech, on clips whose speech onsets are known.

Each clip is sentences separated by silences of known length (tests/cue_timing.py builds them and measures
where speech starts and ends in each source file): real speech by two different people (a LibriVox reader and
President Kennedy) over room tone, and synthetic speech by two espeak-ng voices with digital silence between.
The real CLI subtitles them with the profile's backend and model; the SRT's cues are matched to the sentences
and their start and end errors held to the matrix's gates (cue_start_median, cue_start_max, cue_end_median)
and recorded in the results.
"""

from __future__ import annotations

import pytest
from conftest import MODEL, PROFILE, threshold
from cue_timing import JFK, JFK_TEXT, Clip, Source, build_clip, espeak, librivox, score
from subtitle_checks import assert_readable

pytestmark = pytest.mark.e2e

# Room tone under the real recordings, below their own noise floors (about -45 dB): real speech has no digital
# silence between sentences.
ROOM_TONE_DB = -50.0
# Sentences written for this suite; alternating voices, as two speakers would.
SYNTHETIC = [
    ("The train leaves the station at nine in the morning.", "en-us"),
    ("She packed a small bag and walked to the platform.", "en-gb+f3"),
    ("Nobody noticed that the old clock had stopped.", "en-us"),
    ("By noon the rain had turned to snow, and the roads were closed.", "en-gb+f3"),
    ("We will try again tomorrow.", "en-us"),
]


@pytest.fixture(scope="session")
def timing_clips(tmp_path_factory) -> dict[str, Clip]:
    folder = tmp_path_factory.mktemp("cue-timing")
    book = [librivox(f"sense_and_sensibility_01_austen_64kb-{n}") for n in ("0880", "0890", "0920", "0930", "0870")]
    voices = [book[0], Source(JFK, JFK_TEXT, "John F. Kennedy"), *book[1:]]
    spoken = [espeak(text, voice, folder / f"espeak-{i}.wav") for i, (text, voice) in enumerate(SYNTHETIC)]
    return {
        "real": build_clip(voices, [2.0, 3.0, 1.5, 4.0, 2.5], folder / "two voices.wav", room_tone_db=ROOM_TONE_DB),
        "synthetic": build_clip(spoken, [2.0, 1.5, 3.0, 2.5], folder / "two espeak voices.wav"),
    }


@pytest.mark.parametrize("kind", ["real", "synthetic"])
def test_cues_start_and_end_with_the_speech(kind, timing_clips, pipeline_cli, record_job):
    clip = timing_clips[kind]
    run = pipeline_cli("transcribe", str(clip.path), "-s", "en")
    assert run.manifest["stages"]["transcribe"]["backend"] == PROFILE.runtime.backend
    cues = assert_readable(run.output(clip.path.stem, "en", "srt"))
    timing = score(cues, clip)
    errors = {"start_errors_s": list(timing.start_errors), "end_errors_s": list(timing.end_errors)}
    record_job(run, "subtitle", f"cue-timing-{kind}", extra=errors, **timing.figures())
    where = f"{kind} clip, {PROFILE.runtime.backend} {MODEL}: {timing}"
    assert timing.start_median <= threshold("cue_start_median"), where
    assert timing.start_max <= threshold("cue_start_max"), where
    assert timing.end_median <= threshold("cue_end_median"), where
