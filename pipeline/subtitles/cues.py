"""Subtitle cues from ASR segments, following the usual reading rules.

Three passes: timed tokens (word timings when the backend gave them, else the segment's time spread over its
words by length; given where the audio has speech, a token edge that Whisper put in a pause moves to the edge of
the speech it overlaps), greedy packing into cues that fit the screen and `max_duration` (breaking at sentence or
clause ends where that costs little, and always where the speaker changes), then display timing (lengthen short
cues into the following gap, never onto the next cue).

Speakers: a cue holds one speaker's words, except a dialogue cue (`ReadingRules.dialogue`, the subtitling
convention): a quick exchange of two speakers, one line each, each line led by "- ". Two turns share a cue only
when each fits on one line with its dash, the pair fits `max_duration`, the second starts within
`_EXCHANGE_MS` of the first's end, and one of them is too short to stand alone (the first could not be read
before the second starts, or the second is said in less than `min_duration`): otherwise they are split.

Times are whole milliseconds throughout: SRT and VTT store milliseconds, so a cue that is valid here stays valid
once written.
"""

from __future__ import annotations

import bisect
import math
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pipeline.asr import Segment
from pipeline.errors import PipelineError

_SENTENCE_END = frozenset(".?!…。？！؟।॥")
_CLAUSE_END = frozenset(",;:—–、，；：،")
_CLOSERS = "\"'”’»)]}」』）"
# Where a word too long for a line (a URL, a compound, a run of CJK text) may be cut without a hyphen.
_SOFT_CUT_AFTER = frozenset("/.-_?&=#,;:、，。；：！？")
_PAUSE_MS = 1500  # a silence this long ends a cue: text should not hang on screen across it
_FLOOR_MS = 250  # shortest cue when overlapping input leaves no room: visible, yet little drift for the rest
# A word placed late in the speech it begins moves back at most this far: further, the speech before it is more
# likely an untranscribed sound than the word.
_LEAD_MS = 500
_VIRAMA = 9  # canonical combining class of Indic viramas: the next letter joins a conjunct
_EXCHANGE_MS = 1000  # two speakers' turns this close are one exchange, which a dialogue cue may hold
DIALOGUE_DASH = "- "  # leads each line of a dialogue cue


@dataclass(frozen=True)
class ReadingRules:
    max_line_chars: int = 42
    max_lines: int = 2
    min_duration: float = 1.0
    max_duration: float = 7.0
    max_cps: float = 17.0
    min_gap: float = 0.04
    dialogue: bool = True  # two short turns of different speakers may share a cue, a line each ("- ")

    def __post_init__(self) -> None:
        if self.max_line_chars < 1 or self.max_lines < 1:
            raise PipelineError(
                f"subtitle lines: max_line_chars={self.max_line_chars}, max_lines={self.max_lines}; both must be >= 1"
            )
        if not 0 <= self.min_duration <= self.max_duration or self.max_duration < 0.01:
            raise PipelineError(
                f"subtitle durations: min_duration={self.min_duration}, max_duration={self.max_duration}; "
                "need 0 <= min_duration <= max_duration and max_duration >= 0.01 s"
            )
        if self.max_cps <= 0 or self.min_gap < 0:
            raise PipelineError(
                f"subtitle timing: max_cps={self.max_cps}, min_gap={self.min_gap}; need max_cps > 0 and min_gap >= 0"
            )


@dataclass(frozen=True, slots=True)
class CueWord:
    """A token of a cue with its (speech-corrected) time: what karaoke styles highlight."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]
    # Who says each line (a label such as SPEAKER_00, or a name read back from a file); empty: not known. Two
    # different speakers: a dialogue cue, its lines led by DIALOGUE_DASH.
    speakers: tuple[str | None, ...] = ()
    words: tuple[CueWord, ...] = field(default=(), compare=False)  # the tokens in line order (not in files)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True, slots=True)
class _Token:
    start: int  # ms
    end: int  # ms
    text: str
    strength: int  # how good a cue break after this token is: 2 sentence end, 1 clause end, 0 none
    speaker: str | None = None


def build_cues(
    segments: Iterable[Segment],
    rules: ReadingRules = ReadingRules(),
    duration: float | None = None,
    speech: Sequence[tuple[float, float]] = (),
) -> list[Cue]:
    """Cues for `segments`; given the media's `duration`, the last cue is not lengthened past its end. `speech`:
    where the audio has speech (sorted (start, end) seconds, e.g. by VAD), to correct word times against."""
    tokens = _tokens(segments, rules.max_line_chars, _Speech(speech) if speech else None)
    groups = _pair(_pack(tokens, rules), rules)
    return _time(groups, rules, None if duration is None else _ms(duration))


# --- tokens -------------------------------------------------------------------------------------------------


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _strength(text: str) -> int:
    tail = text.rstrip(_CLOSERS)[-1:]
    return 2 if tail in _SENTENCE_END else 1 if tail in _CLAUSE_END else 0


def _spread(start: int, end: int, texts: Sequence[str]) -> list[tuple[int, int, str]]:
    """Share [start, end] among `texts` in proportion to their lengths."""
    total = sum(len(t) for t in texts) or 1
    out, done = [], 0
    for text in texts:
        lo = start + (end - start) * done // total
        done += len(text)
        out.append((lo, start + (end - start) * done // total, text))
    return out


def _can_cut(word: str, i: int) -> bool:
    """May `word` be cut before word[i] without tearing a grapheme or an Indic conjunct apart?"""
    before, after = word[i - 1], word[i]
    return not (
        unicodedata.category(after).startswith("M")
        or after in "\u200c\u200d"
        or before == "\u200d"
        or unicodedata.combining(before) == _VIRAMA
    )


def _hard_split(word: str, width: int) -> list[str]:
    """Cut a word longer than a line into near-equal pieces, after URL/CJK punctuation where some is near."""
    pieces = []
    while len(word) > width:
        ideal = math.ceil(len(word) / math.ceil(len(word) / width))
        cuts = [i for i in range(1, width + 1) if _can_cut(word, i)]
        soft = [i for i in cuts if word[i - 1] in _SOFT_CUT_AFTER and i >= 2 * ideal // 3]
        candidates = soft or cuts or [width]  # a run of combining marks longer than a line: cut it anyway
        cut = min(candidates, key=lambda i: (abs(i - ideal), -i))
        pieces.append(word[:cut])
        word = word[cut:]
    return [*pieces, word]


class _Speech:
    """Speech regions in ms, to correct the edges of word times by.

    Whisper's cross-attention times are least sure next to silence: a word after a pause tends to start in it
    (the decoder attends to the window's start), or, with small models, late inside the speech; the last word
    before a pause tends to end in it. A start that lies in a pause moves forward to where the speech it overlaps
    begins, an end that lies in one back to where that speech ends; the first word of a stretch of speech that
    starts inside it moves back to its onset. Segments without word times are corrected the same way. A word
    wholly inside a pause (the VAD missed soft speech) keeps its times."""

    def __init__(self, regions: Sequence[tuple[float, float]]) -> None:
        self.regions: list[tuple[int, int]] = []
        for a, b in sorted((_ms(a), _ms(b)) for a, b in regions if b > a):
            if self.regions and a <= self.regions[-1][1]:  # overlapping or touching: one stretch of speech
                first, last = self.regions.pop()
                a, b = first, max(last, b)
            self.regions.append((a, b))
        self.starts = [a for a, _ in self.regions]

    def snap(self, start: int, end: int, previous_end: int) -> tuple[int, int]:
        i = bisect.bisect_right(self.starts, start) - 1  # the last region that starts at or before `start`
        if (i < 0 or start >= self.regions[i][1]) and i + 1 < len(self.regions) and self.starts[i + 1] < end:
            start = self.starts[i + 1]
        elif i >= 0 and previous_end <= self.starts[i] < start < self.regions[i][1]:
            # The first word of a stretch of speech, starting inside it: the speech before it is its own.
            start = max(self.starts[i], start - _LEAD_MS)
        k = bisect.bisect_left(self.starts, end) - 1  # the last region that starts before `end`
        if k >= 0 and end > self.regions[k][1] > start:
            end = self.regions[k][1]
        return start, end


def _tokens(segments: Iterable[Segment], width: int, speech: _Speech | None = None) -> list[_Token]:
    tokens: list[_Token] = []
    for segment in segments:
        timed = [(_ms(w.start), _ms(w.end), w.text.split(), w.speaker or segment.speaker) for w in segment.words]
        # Words with nothing to show (a backend's blank tokens) leave the segment's own text to show.
        timed = [t for t in timed if t[2]]
        timed = timed or [(_ms(segment.start), _ms(segment.end), segment.text.split(), segment.speaker)]
        first = len(tokens)
        for start, end, words, speaker in timed:
            if speech is not None:
                start, end = speech.snap(start, end, tokens[-1].end if tokens else -1)
            pieces = [piece for word in words for piece in _hard_split(word, width)]
            for lo, hi, text in _spread(start, end, pieces):
                # Backends emit overlapping or backwards times; make starts monotonic and ends no earlier.
                lo = max(lo, tokens[-1].start if tokens else 0, 0)
                tokens.append(_Token(lo, max(hi, lo), text, _strength(text), speaker))
        if len(tokens) > first and tokens[-1].strength == 0:  # a segment end is at least a clause end
            last = tokens[-1]
            tokens[-1] = _Token(last.start, last.end, last.text, 1, last.speaker)
    return tokens


# --- packing ------------------------------------------------------------------------------------------------


def _line_count(lengths: Sequence[int], width: int) -> int:
    """Lines that greedy filling needs: the fewest possible, since every token fits on a line by itself."""
    lines, used = 1, -1
    for n in lengths:
        if used + 1 + n > width:
            lines, used = lines + 1, n
        else:
            used += 1 + n
    return lines


def _fits(group: Sequence[_Token], rules: ReadingRules) -> bool:
    return _line_count([len(t.text) for t in group], rules.max_line_chars) <= rules.max_lines and max(
        t.end for t in group
    ) - group[0].start <= _ms(rules.max_duration)


def _pack(tokens: Sequence[_Token], rules: ReadingRules) -> list[list[_Token]]:
    groups: list[list[_Token]] = []
    current: list[_Token] = []
    for token in tokens:
        if current and (token.start - max(t.end for t in current) >= _PAUSE_MS or token.speaker != current[-1].speaker):
            groups.append(current)
            current = []
        if current and not _fits([*current, token], rules):
            # Break where the best punctuation is, provided the cue keeps at least half its text.
            chars = [len(t.text) + 1 for t in current]
            half = sum(chars) / 2
            cut = max(
                (k for k in range(1, len(current) + 1) if sum(chars[:k]) >= half),
                key=lambda k: (current[k - 1].strength, k),
            )
            groups.append(current[:cut])
            current = current[cut:]
            if current and not _fits([*current, token], rules):
                groups.append(current)
                current = []
        current.append(token)
        if token.strength == 2 and sum(len(t.text) + 1 for t in current) > rules.max_line_chars // 2:
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return groups


def _width(group: Sequence[_Token]) -> int:
    return sum(len(t.text) + 1 for t in group) - 1


def _pair(groups: Sequence[list[_Token]], rules: ReadingRules) -> list[tuple[list[_Token], ...]]:
    """Each group a cue of its own, but for quick exchanges of two speakers, a line each (see the module doc)."""
    out: list[tuple[list[_Token], ...]] = []
    i = 0
    while i < len(groups):
        if i + 1 < len(groups) and _exchange(groups[i], groups[i + 1], rules):
            out.append((groups[i], groups[i + 1]))
            i += 2
        else:
            out.append((groups[i],))
            i += 1
    return out


def _exchange(a: Sequence[_Token], b: Sequence[_Token], rules: ReadingRules) -> bool:
    first, second = a[0].speaker, b[0].speaker
    if not rules.dialogue or rules.max_lines < 2 or first is None or second is None or first == second:
        return False
    line = rules.max_line_chars - len(DIALOGUE_DASH)
    a_end, b_end = max(t.end for t in a), max(t.end for t in b)
    if _width(a) > line or _width(b) > line or b[0].start - a_end >= _EXCHANGE_MS:
        return False
    if b_end - a[0].start > _ms(rules.max_duration):
        return False
    reading = max(_ms(rules.min_duration), math.ceil(1000 * (_width(a) + len(DIALOGUE_DASH)) / rules.max_cps))
    return b[0].start - a[0].start < reading or b_end - b[0].start < _ms(rules.min_duration)


# --- lines --------------------------------------------------------------------------------------------------


def _wrap(words: Sequence[str], rules: ReadingRules) -> tuple[str, ...]:
    """The fewest lines that fit, as even in length as possible (shortest longest line, then least spread)."""
    n = len(words)
    lines = _line_count([len(w) for w in words], rules.max_line_chars)

    def width(i: int, j: int) -> int:
        return sum(len(w) for w in words[i:j]) + (j - i - 1)

    # best[k][j]: (longest line, sum of squared lengths, previous cut) for words[:j] set in k lines
    best: list[dict[int, tuple[int, int, int]]] = [{0: (0, 0, 0)}]
    for k in range(1, lines + 1):
        row: dict[int, tuple[int, int, int]] = {}
        for j in range(k, n + 1):
            options = [
                (max(prev[0], width(i, j)), prev[1] + width(i, j) ** 2, i)
                for i, prev in best[k - 1].items()
                if i < j and width(i, j) <= rules.max_line_chars
            ]
            if options:
                row[j] = min(options)
        best.append(row)
    cuts, j = [], n
    for k in range(lines, 0, -1):
        i = best[k][j][2]
        cuts.append(" ".join(words[i:j]))
        j = i
    return tuple(reversed(cuts))


# --- timing -------------------------------------------------------------------------------------------------


def _time(groups: Sequence[tuple[list[_Token], ...]], rules: ReadingRules, media_end: int | None) -> list[Cue]:
    gap, longest, shortest = _ms(rules.min_gap), _ms(rules.max_duration), _ms(rules.min_duration)
    cues: list[Cue] = []
    previous_end: int | None = None
    for index, parts in enumerate(groups):
        group = [t for part in parts for t in part]
        speakers: tuple[str | None, ...]
        if len(parts) == 1:
            lines = _wrap([t.text for t in group], rules)
            speakers = (group[0].speaker,) * len(lines) if group[0].speaker is not None else ()
        else:  # a dialogue cue: a line per speaker
            lines = tuple(DIALOGUE_DASH + " ".join(t.text for t in part) for part in parts)
            speakers = tuple(part[0].speaker for part in parts)
        start = group[0].start if previous_end is None else max(group[0].start, previous_end + gap)
        spoken = max(t.end for t in group) - start
        reading = math.ceil(1000 * sum(len(line) for line in lines) / rules.max_cps)
        want = max(1, min(longest, max(spoken, shortest, reading)))
        # Stop short of the next cue's speech (or the media's end), but never below a visible floor.
        if index + 1 < len(groups):
            room = groups[index + 1][0][0].start - gap - start
        else:
            room = want if media_end is None else media_end - start
        end = start + min(want, max(room, min(want, _FLOOR_MS)))
        words = tuple(CueWord(t.start / 1000, t.end / 1000, t.text) for t in group)
        cues.append(Cue(start / 1000, end / 1000, lines, speakers, words))
        previous_end = end
    return cues
