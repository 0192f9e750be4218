"""The diarizer's own steps, without the models: the powerset, the stitching of windows into tracks, the turns, and
the clustering of voices (sherpa-onnx's, on made-up voices). The models on real speech: test_diarization.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pipeline.speakers.diarizer import (
    POWERSET,
    STEP,
    WINDOW,
    Analysis,
    Frames,
    Piece,
    aggregate,
    assign,
    local_activity,
    stitch,
    turns_of,
    window_starts,
)

FRAMES = Frames()
WIDTH = 589  # frames in the model's 10 s window
OFFSET = round(STEP / FRAMES.shift)


def test_the_powerset_classes_become_local_speakers() -> None:
    scores = np.full((len(POWERSET), len(POWERSET)), -9.0)
    np.fill_diagonal(scores, 0.0)  # frame i: class i most likely
    active = local_activity(scores)
    assert [tuple(np.flatnonzero(row)) for row in active] == list(POWERSET)


def test_windows_cover_the_audio_and_step_evenly() -> None:
    assert window_starts(5 * 16000) == [0]
    starts = window_starts(25 * 16000)
    assert starts == [0, STEP, 2 * STEP, 3 * STEP, 4 * STEP, 5 * STEP]
    assert starts[-1] + WINDOW >= 25 * 16000 > starts[-2] + WINDOW


def _windows(truth: np.ndarray, orders: list[tuple[int, int, int]]) -> tuple[list[np.ndarray], list[int]]:
    """Each window's local view of the true activity (frames, 3), its speakers in slots of the given order."""
    starts = window_starts((len(truth) - WIDTH) * FRAMES.shift + WINDOW)
    windows = []
    for k, start in enumerate(starts):
        first = round(start / FRAMES.shift)
        local = np.zeros((WIDTH, 3), dtype=bool)
        seen = truth[first : first + WIDTH]
        local[: len(seen)] = seen[:, list(orders[k % len(orders)])]
        windows.append(local)
    return windows, starts


def _firsts(starts: list[int]) -> list[int]:
    return [round(start / FRAMES.shift) for start in starts]


def _padded(truth: np.ndarray, frames: int) -> np.ndarray:
    """The truth as long as the windows reach (the last one padded with silence)."""
    return np.concatenate([truth, np.zeros((max(frames - len(truth), 0), 3), dtype=bool)])[:frames]


def _truth(turns: list[tuple[int, int, int]], frames: int) -> np.ndarray:
    truth = np.zeros((frames, 3), dtype=bool)
    for first, last, speaker in turns:
        truth[first:last, speaker] = True
    return truth


def test_a_speaker_in_other_slots_from_window_to_window_stays_one_track() -> None:
    frames = WIDTH + 6 * OFFSET
    truth = _truth([(0, 700, 0), (650, 1100, 1), (1100, frames, 0)], frames)
    windows, starts = _windows(truth, [(0, 1, 2), (2, 0, 1), (1, 2, 0)])
    tracks = stitch(windows, _firsts(starts))
    active = aggregate(windows, tracks, starts, FRAMES)
    truth = _padded(truth, len(active))
    for column in active.T:  # each track is one speaker's: all its frames are that speaker's
        assert any(not (column & ~truth[:, s]).any() for s in range(3))
    # speaker 0 talks through the first windows' overlaps: one track from the start to frame 700
    first = next(t for t in range(active.shape[1]) if active[0, t])
    assert active[:700, first].all() and not active[720:1000, first].any()


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2000), st.integers(20, 600), st.integers(0, 2)), min_size=1, max_size=8),
    st.lists(st.permutations([0, 1, 2]), min_size=1, max_size=4),
)
def test_stitched_tracks_never_mix_two_speakers_and_cover_all_speech(turns, orders) -> None:  # type: ignore[no-untyped-def]
    frames = WIDTH + 8 * OFFSET
    truth = _truth([(a, min(a + n, frames), s) for a, n, s in turns], frames)
    windows, starts = _windows(truth, [tuple(o) for o in orders])
    firsts = _firsts(starts)
    for first, end in zip(firsts[1:], [f + WIDTH for f in firsts], strict=False):  # where two windows overlap
        overlap = _padded(truth, end)[first:]
        for a, b in itertools.combinations(range(3), 2):  # two people talking in unison there: no one can tell
            assume(not (overlap[:, a].any() and (overlap[:, a] == overlap[:, b]).all()))
    active = aggregate(windows, stitch(windows, firsts), starts, FRAMES)
    seen = _padded(truth, len(active))
    for column in active.T:
        assert any(not (column & ~seen[:, s]).any() for s in range(3))
    assert (active.any(axis=1) == seen.any(axis=1)).all()


def test_turns_bridge_short_pauses_drop_short_turns_and_stop_at_the_chunk_end() -> None:
    per_second = 16000 / FRAMES.shift
    active = np.zeros((int(12 * per_second), 2), dtype=bool)
    active[int(1 * per_second) : int(3 * per_second), 0] = True
    active[int(3.3 * per_second) : int(5 * per_second), 0] = True  # a 0.3 s pause: bridged
    active[int(6 * per_second) : int(6.2 * per_second), 1] = True  # 0.2 s: dropped
    active[int(8 * per_second) :, 1] = True
    turns = turns_of(active, FRAMES, limit=11.0)
    assert [(round(a, 1), round(b, 1), s) for a, b, s in turns] == [(1.0, 5.0, 0), (8.0, 11.0, 1)]


def _cluster(threshold: float):  # type: ignore[no-untyped-def]
    sherpa_onnx = pytest.importorskip("sherpa_onnx", reason="the speakers extra: pip install 'pipeline[speakers]'")

    def cluster(voices: np.ndarray, count: int) -> list[int]:
        config = sherpa_onnx.FastClusteringConfig(num_clusters=count, threshold=threshold)
        return [int(x) for x in sherpa_onnx.FastClustering(config)(voices)]

    return cluster


def _voice(angle: float) -> np.ndarray:
    vector = np.zeros(4, dtype=np.float32)
    vector[0], vector[1] = np.cos(angle), np.sin(angle)
    return vector


def test_each_owner_takes_the_speaker_most_of_its_speech_is_and_a_stray_piece_starts_nobody() -> None:
    pieces = [
        Piece(0, 5.0, _voice(0.0)),
        Piece(0, 4.0, _voice(0.1)),
        Piece(1, 6.0, _voice(1.4)),
        Piece(1, 0.6, _voice(2.6)),  # a short piece unlike anyone: its own cluster, outvoted
        Piece(2, 3.0, _voice(0.05)),
    ]
    assert assign(pieces, 4, _cluster(0.5)) == [0, 1, 0, -1]  # owner 3 has no voice
    assert assign(pieces, 3, _cluster(0.5), count=2) == [0, 1, 0]
    # into a known count the votes cannot reach (two clusters of pieces, three owners): the owners' voices
    assert sorted(set(assign(pieces[:3] + pieces[4:], 3, _cluster(0.5), count=3))) == [0, 1, 2]


def _analysis(stretches: list[tuple[int, int, int]], voices: list[float]) -> Analysis:
    """Stretches (first frame, end frame, track), each with 2 s of voice at the given angle."""
    active = np.zeros((3000, len(stretches)), dtype=bool)
    for owner, (first, end, _) in enumerate(stretches):
        active[first:end, owner] = True
    pieces = [Piece(owner, 2.0, _voice(angle)) for owner, angle in enumerate(voices)]
    return Analysis(active, [t for *_, t in stretches], pieces, 3000 * FRAMES.shift / 16000, FRAMES)


def test_a_stretch_unlike_its_tracks_speaker_is_told_apart() -> None:
    # Track 0 holds one voice, then (after a long pause) another: the model gave two people one slot.
    stretches = [(0, 400, 0), (600, 1000, 1), (1200, 1600, 0), (2000, 2400, 0)]
    turns, pieces = _analysis(stretches, [0.0, 1.4, 0.05, 2.8]).speakers(_cluster(0.5), 0.5)
    assert [who for *_, who in turns] == [0, 1, 0, 2]  # the last stretch: a third person
    assert [len(p) for p in pieces] == [2, 1, 1]
    # like the other track's speaker: that speaker's
    turns, _ = _analysis(stretches, [0.0, 1.4, 0.05, 1.45]).speakers(_cluster(0.5), 0.5)
    assert [who for *_, who in turns] == [0, 1, 0, 1]
    # the count known (2): the nearest of the two, never a third
    turns, _ = _analysis(stretches, [0.0, 1.4, 0.05, 2.8]).speakers(_cluster(0.5), 0.5, count=2)
    assert [who for *_, who in turns] == [0, 1, 0, 1]
