"""Diarization of one chunk of audio: pyannote segmentation-3.0 (onnxruntime) in overlapping 10 s windows, the
windows' local speakers stitched into tracks where they agree on the audio both windows hear, then one CAM++
voice per track (sherpa-onnx's extractor) and sherpa-onnx's clustering of the tracks' voices.

Why not sherpa-onnx's `OfflineSpeakerDiarization`, which does pyannote's own recipe: it embeds every local speaker
of every window again, so each second of speech is embedded once per window that sees it (3-10 times), and the
embeddings are most of its cost. Here each second of speech is embedded once, and the windows' overlap, which
pyannote spends on embeddings, links their speakers instead (the way pyannote 2's stitching did).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SAMPLE_RATE = 16000
WINDOW = 160_000  # the segmentation model's 10 s (its metadata's window_size)
# The window's step: the overlap of two windows (7 s) is what links their speakers, and frames near a window's
# edges, which the model hears least of, weigh less (a Hamming window) where several windows see them.
STEP = 48_000
# pyannote segmentation-3.0's powerset: the classes of its 7 outputs, as sets of its 3 local speakers.
POWERSET = ((), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2))
# A local speaker continues a track where the two windows' activity agrees this much on their overlap (Dice).
LINK = 0.5
MIN_DURATION_ON = 0.3  # turns shorter than this are dropped
MIN_DURATION_OFF = 0.5  # pauses shorter than this within one speaker's turn are bridged
EMBED_PIECE = 10.0  # s: CAM++'s input at a time (onnxruntime keeps buffers sized for the longest input)
# A track's speech is split into stretches at pauses this long, each checked against its track's speaker: the model
# may give two people one slot of a window when they speak far apart in it, and the stitching follows one into the
# other.
TURN_GAP = 2.0
MIN_PIECE = 0.5  # s: a shorter stretch of speech alone gives no voice to go by
MIN_VOICE = 1.0  # s of voice a stretch needs to be told from its track's speaker


@dataclass(frozen=True)
class Frames:
    """The segmentation model's frame grid: frame i of a window starts at i * shift samples, spans `size`."""

    shift: int = 270
    size: int = 991

    def centre(self, index: np.ndarray | int) -> Any:
        return (np.asarray(index) * self.shift + self.size / 2) / SAMPLE_RATE


Raw = list[tuple[float, float, int]]


def window_starts(samples: int) -> list[int]:
    """Where each window starts: every STEP, the last one reaching the end (padded with silence past it)."""
    if samples <= WINDOW:
        return [0]
    starts = list(range(0, samples - WINDOW, STEP))
    return [*starts, starts[-1] + STEP] if starts[-1] + WINDOW < samples else starts


def local_activity(scores: np.ndarray) -> np.ndarray:
    """(frames, 3) booleans from the model's (frames, 7) powerset scores: the most likely class's speakers."""
    best = scores.argmax(axis=-1)
    table = np.zeros((len(POWERSET), 3), dtype=bool)
    for index, members in enumerate(POWERSET):
        table[index, list(members)] = True
    return table[best]


def stitch(activity: Sequence[np.ndarray], firsts: Sequence[int]) -> list[list[int]]:
    """The track of each window's local speakers (-1: silent in that window). Window k+1's speaker continues the
    track of window k's speaker it agrees with best on the frames both hear (`firsts`: each window's first frame),
    when they agree at least LINK (Dice); otherwise it starts a track of its own."""
    tracks: list[list[int]] = []
    count = 0
    for k, active in enumerate(activity):
        own = [-1, -1, -1]
        speaking = [s for s in range(3) if active[:, s].any()]
        offset = firsts[k] - firsts[k - 1] if k else len(active)
        if offset < len(active):
            before = activity[k - 1][offset:]
            now = active[: len(before)]
            agree = [[_dice(before[:, i], now[:, j]) for j in range(3)] for i in range(3)]
            best, order = -1.0, tuple(range(3))  # order[j]: the slot of window k that slot j continues
            for ways in itertools.permutations(range(3)):  # 6 ways: the most agreement (a tie keeps the slots)
                if (score := sum(agree[i][j] for j, i in enumerate(ways))) > best:
                    best, order = score, ways
            for j, i in enumerate(order):
                if j in speaking and tracks[-1][i] >= 0 and agree[i][j] >= LINK:
                    own[j] = tracks[-1][i]
        for j in speaking:
            if own[j] < 0:
                own[j], count = count, count + 1
        tracks.append(own)
    return tracks


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * float(np.logical_and(a, b).sum()) / total if total else 0.0


def aggregate(activity: Sequence[np.ndarray], tracks: list[list[int]], starts: list[int], frames: Frames) -> Any:
    """(global frames, tracks) booleans: each track's activity where the windows that see a frame, Hamming-weighted
    (their edges least), hold it active more than not."""
    width = len(activity[0])
    total = max((t for own in tracks for t in own), default=-1) + 1
    length = round(starts[-1] / frames.shift) + width
    votes = np.zeros((length, total), dtype=np.float32)
    weight = np.zeros(length, dtype=np.float32)
    hamming = np.hamming(width).astype(np.float32) + 1e-3
    for active, own, start in zip(activity, tracks, starts, strict=True):
        first = round(start / frames.shift)
        weight[first : first + width] += hamming
        for local, track in enumerate(own):
            if track >= 0:
                votes[first : first + width, track] += hamming * active[:, local]
    return votes > 0.5 * weight[:, None]


def _runs(column: np.ndarray) -> list[tuple[int, int]]:
    """(first, end) frames of each run of True in a boolean column."""
    edges = np.flatnonzero(np.diff(np.concatenate([[False], column, [False]]).astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def turns_of(active: np.ndarray, frames: Frames, limit: float) -> Raw:
    """Each track's turns in seconds: runs of active frames, pauses under MIN_DURATION_OFF bridged, turns under
    MIN_DURATION_ON dropped, nothing past `limit` (the chunk's end)."""
    turns: Raw = []
    for track in range(active.shape[1]):
        runs: list[list[float]] = []
        for first, last in _runs(active[:, track]):
            start = float(frames.centre(first)) - frames.shift / SAMPLE_RATE / 2
            end = min(float(frames.centre(last - 1)) + frames.shift / SAMPLE_RATE / 2, limit)
            if runs and start - runs[-1][1] < MIN_DURATION_OFF:
                runs[-1][1] = end
            elif start < limit:
                runs.append([max(start, 0.0), end])
        turns += [(a, b, track) for a, b in runs if b - a >= MIN_DURATION_ON]
    return sorted(turns)


def alone(active: np.ndarray, frames: Frames) -> list[list[tuple[int, int]]]:
    """Per track, (first, end) sample ranges where it speaks and nobody else does: what its voice is taken from."""
    solo = active & (active.sum(axis=1, keepdims=True) == 1)
    half = (frames.size - frames.shift) // 2  # a run's first frame's centre less half a shift, and so on
    pieces: list[list[tuple[int, int]]] = []
    for track in range(active.shape[1]):
        pieces.append([(a * frames.shift + half, b * frames.shift + half) for a, b in _runs(solo[:, track])])
    return pieces


@dataclass(frozen=True)
class Piece:
    """A stretch of one owner's (a track's, or a chunk's speaker's) speech alone: its length and unit voice."""

    owner: int
    seconds: float
    voice: np.ndarray


def embed_pieces(
    embed: Callable[[np.ndarray], np.ndarray], samples: np.ndarray, ranges: list[list[tuple[int, int]]]
) -> list[Piece]:
    """A unit CAM++ embedding of every range, EMBED_PIECE s at a time; ranges under MIN_PIECE s carry no voice."""
    limit = int(EMBED_PIECE * SAMPLE_RATE)
    pieces = []
    for owner, spans in enumerate(ranges):
        for first, end in spans:
            for at in range(first, min(end, len(samples)), limit):
                piece = samples[at : min(at + limit, end, len(samples))]
                if len(piece) >= MIN_PIECE * SAMPLE_RATE:
                    vector = embed(piece)
                    pieces.append(Piece(owner, len(piece) / SAMPLE_RATE, vector / (np.linalg.norm(vector) or 1.0)))
    return pieces


Cluster = Callable[[np.ndarray, int], list[int]]


def assign(pieces: Sequence[Piece], owners: int, cluster: Cluster, count: int = -1) -> list[int]:
    """A speaker (0, 1 ... ) per owner, -1 for an owner with no voice. The pieces are clustered (by the threshold,
    complete linkage: a noisy piece stays on its own rather than joining two voices), and each owner takes the
    cluster most of its seconds fall in. Into a known `count`: when the owners' votes leave fewer speakers than
    that, their mean voices are clustered into it instead."""
    if not pieces:
        return [-1] * owners
    labels = cluster(np.stack([p.voice for p in pieces]).astype(np.float32), count) if len(pieces) > 1 else [0]
    votes: dict[int, dict[int, float]] = {}
    for piece, label in zip(pieces, labels, strict=True):
        votes.setdefault(piece.owner, {}).setdefault(int(label), 0.0)
        votes[piece.owner][int(label)] += piece.seconds
    chosen = {owner: max(tally, key=lambda k: tally[k]) for owner, tally in votes.items()}
    if count > 0 and len(set(chosen.values())) < count <= len(chosen):
        voiced = sorted(chosen)
        means = np.stack([_mean([p for p in pieces if p.owner == o]) for o in voiced]).astype(np.float32)
        chosen = dict(zip(voiced, (int(x) for x in cluster(means, count)), strict=True))
    compact = {label: index for index, label in enumerate(dict.fromkeys(chosen[o] for o in sorted(chosen)))}
    return [compact[chosen[o]] if o in chosen else -1 for o in range(owners)]


def _mean(pieces: Sequence[Piece]) -> np.ndarray:
    total = np.sum([p.voice * p.seconds for p in pieces], axis=0)
    return np.asarray(total / (np.linalg.norm(total) or 1.0), dtype=np.float32)


def split(active: np.ndarray, frames: Frames) -> tuple[np.ndarray, list[int]]:
    """Each track's activity cut at its pauses of TURN_GAP or more: (frames, stretches) and each stretch's track."""
    gap = round(TURN_GAP * SAMPLE_RATE / frames.shift)
    columns, parent = [], []
    for track in range(active.shape[1]):
        runs = _runs(active[:, track])
        groups = [[runs[0]]] if runs else []
        for run in runs[1:]:
            if run[0] - groups[-1][-1][1] >= gap:
                groups.append([])
            groups[-1].append(run)
        for group in groups:
            stretch = np.zeros(active.shape[0], dtype=bool)
            for first, end in group:
                stretch[first:end] = True
            columns.append(stretch)
            parent.append(track)
    if not columns:
        return np.zeros((active.shape[0], 0), dtype=bool), []
    return np.stack(columns, axis=1), parent


@dataclass(frozen=True)
class Analysis:
    """A chunk's speech before its speakers are told apart: the activity per frame of its stretches (a track's
    speech between long pauses), each one's track, and their pieces (the stretches are the pieces' owners)."""

    active: np.ndarray  # (frames, stretches) booleans
    track: list[int]
    pieces: list[Piece]
    seconds: float  # the chunk's length
    frames: Frames

    def speakers(self, cluster: Cluster, threshold: float, count: int = -1) -> tuple[Raw, list[list[Piece]]]:
        """Turns (start, end, speaker) in seconds from the chunk's start, and each speaker's pieces (to link it to
        other chunks' speakers). Each track takes the speaker most of its voice is (`assign`); a stretch whose own
        voice is further than `threshold` from its track's speaker goes to the nearest other one within it, or
        else (the count not known) is a speaker of its own. A track with no voice joins the speaker with the most
        speech."""
        if not self.track:
            return [], []
        tracks = max(self.track) + 1
        by_track = [Piece(self.track[p.owner], p.seconds, p.voice) for p in self.pieces]
        speaker = assign(by_track, tracks, cluster, count)
        length = [float(self.active[:, o].sum()) for o in range(len(self.track))]
        spoken = {s: sum(n for o, n in enumerate(length) if speaker[self.track[o]] == s) for s in set(speaker) - {-1}}
        fallback = max(spoken, key=lambda s: spoken[s]) if spoken else 0
        who = [speaker[t] if speaker[t] >= 0 else fallback for t in self.track]
        for stretch in range(len(who)):
            own = [p for p in self.pieces if p.owner == stretch]
            if sum(p.seconds for p in own) < MIN_VOICE:
                continue
            voice = _mean(own)
            others: dict[int, list[Piece]] = {}  # each speaker's voice without this stretch
            for p in self.pieces:
                if p.owner != stretch:
                    others.setdefault(who[p.owner], []).append(p)
            distance = {person: 1.0 - float(voice @ _mean(pieces)) for person, pieces in others.items()}
            if who[stretch] not in distance or distance[who[stretch]] <= threshold:
                continue  # its track's speaker, or nobody else to compare with
            nearest = min(distance, key=lambda person: distance[person])
            who[stretch] = nearest if distance[nearest] <= threshold or count > 0 else max(who) + 1
        merged = np.zeros((self.active.shape[0], max(who) + 1), dtype=bool)
        for stretch, person in enumerate(who):
            merged[:, person] |= self.active[:, stretch]
        turns = turns_of(merged, self.frames, self.seconds)
        order = list(dict.fromkeys(person for _, _, person in turns))  # speakers whose turns survived
        number = {person: index for index, person in enumerate(order)}
        own_pieces = [[p for p in self.pieces if who[p.owner] == person] for person in order]
        return [(a, b, number[w]) for a, b, w in turns], own_pieces


class Diarizer:
    """The models, loaded once per process: `analyse` a chunk's samples, then tell its speakers apart."""

    def __init__(self, segmentation: str, embedding: str, threads: int = 1) -> None:
        import onnxruntime
        import sherpa_onnx

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = max(threads, 1)
        self.session = onnxruntime.InferenceSession(segmentation, options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.frames = Frames(int(meta.get("receptive_field_shift", 270)), int(meta.get("receptive_field_size", 991)))
        config = sherpa_onnx.SpeakerEmbeddingExtractorConfig(model=embedding, num_threads=max(threads, 1))
        self.extractor = sherpa_onnx.SpeakerEmbeddingExtractor(config)

    def embed(self, samples: np.ndarray) -> np.ndarray:
        stream = self.extractor.create_stream()
        stream.accept_waveform(SAMPLE_RATE, samples)
        stream.input_finished()
        return np.asarray(self.extractor.compute(stream), dtype=np.float32)

    def segment(self, samples: np.ndarray, progress: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
        """Each window's local speakers' activity, (frames, 3) booleans."""
        starts = window_starts(len(samples))
        name = self.session.get_inputs()[0].name
        activity = []
        for done, start in enumerate(starts):
            window = np.zeros(WINDOW, dtype=np.float32)  # the last one padded with silence
            piece = samples[start : start + WINDOW]
            window[: len(piece)] = piece
            activity.append(local_activity(self.session.run(None, {name: window[None, None, :]})[0][0]))
            if progress is not None:
                progress(done + 1, len(starts))
        return activity

    def analyse(self, samples: np.ndarray, progress: Callable[[int, int], None] | None = None) -> Analysis:
        activity = self.segment(samples, progress)
        starts = window_starts(len(samples))
        tracks = stitch(activity, [round(start / self.frames.shift) for start in starts])
        seconds = len(samples) / SAMPLE_RATE
        if not any(t >= 0 for own in tracks for t in own):  # nobody speaks
            return Analysis(np.zeros((0, 0), dtype=bool), [], [], seconds, self.frames)
        active, track = split(aggregate(activity, tracks, starts, self.frames), self.frames)
        pieces = embed_pieces(self.embed, samples, alone(active, self.frames))
        return Analysis(active, track, pieces, seconds, self.frames)
