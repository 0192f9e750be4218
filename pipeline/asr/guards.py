"""Guards against text that was never said: what is left after the libraries' own guards, removed and recorded.

The decode guards are the libraries' own, with the same WHISPER_* names on every backend:

| guard | faster-whisper sequential | faster-whisper batched | whisperx | mlx-whisper |
|---|---|---|---|---|
| no_speech_threshold | library | here (window's score) | n/a: no probability; pyannote VAD | library + here |
| log_prob_threshold | library (fallback) | here, with no_speech | here, for filler phrases | library + here |
| compression_ratio_threshold | library (fallback) + here | here | here | library + here |
| condition_on_previous_text | library | always off (library) | always off (library) | library |
| hallucination_silence_threshold | library (with words) | n/a: VAD cut the silence | n/a: VAD | library (with words) |
| hotwords | library | library | library (asr_options) | prompt (no hotwords) |

"here" is `filter_segments`, run by the worker over the whole stream, on the scores a backend left on its
segments (`Segment.avg_logprob`, `no_speech_prob`) and on the text alone. Its text rules are language-agnostic:
words split on whitespace, characters for scripts written without spaces. A segment goes when it is:
Whisper's silent window (no-speech probability over, log prob under their thresholds); over the compression
threshold while unsure, or twice over; without a letter or digit once sound tags ([Music], ♪ ... ♪) are taken out;
a loop (an n-gram of up to MAX_N units repeated LOOP_REPEATS+ times in a row over LOOP_SHARE of it; said with
confidence, in words, the loop is only cut back to its first time round, `trim_loop`); a known filler
("Thank you.", "Subtitles by the Amara.org community" ...) said with low confidence; or the 2nd+ of
REPEATED_SEGMENTS+ consecutive segments with the same text (every one, if it is a filler).
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

from pipeline.asr import Removed, Segment

# A loop: an n-gram (1..MAX_N units) repeated LOOP_REPEATS times in a row, taking at least LOOP_SHARE of the
# segment's units and at least LOOP_UNITS units ("no no no" is speech; Whisper's loops run on for a window).
MAX_N = 12
LOOP_REPEATS = 4
LOOP_UNITS = 8
LOOP_SHARE = 0.5
LOOP_COMPRESSION = 2.0  # a compression ratio this many times the threshold is a loop whatever the decoder's confidence
REPEATED_SEGMENTS = 3  # the same text in this many consecutive segments: all but the first go
# Whisper's well-known fillers on music, noise and silence (subtitle credits it learnt from). Removed only when the
# decoder was unsure, or when they repeat: a real "Thank you." at the end of a talk stays.
FILLERS = frozenset(
    {
        "thank you",
        "thanks for watching",
        "thank you for watching",
        "thank you so much for watching",
        "please subscribe",
        "subscribe to my channel",
        "bye",
        "you",
        "subtitles by the amaraorg community",
        "amaraorg",
        "sous-titrage st 501",
        "sous-titres réalisés para la communauté d'amaraorg",
        "untertitel im auftrag des zdf für funk 2017",
        "untertitel der amaraorg-community",
        "gracias por ver",
        "subtítulos realizados por la comunidad de amaraorg",
        "продолжение следует",
        "редактор субтитров асемкин корректор аегорова",
        "ご視聴ありがとうございました",
        "字幕by索兰娅",
        "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目",
        "謝謝觀看",
        "시청해주셔서 감사합니다",
    }
)
_TAG = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|♪[^♪]*♪")  # [Music], (applause), *laughs*, ♪ la la ♪


@dataclass(frozen=True)
class Limits:
    no_speech_threshold: float | None = 0.6
    log_prob_threshold: float | None = -1.0
    compression_ratio_threshold: float | None = 2.4
    repetition_filter: bool = True


@dataclass(frozen=True)
class Filtered:
    kept: tuple[Segment, ...]
    removed: tuple[Removed, ...]


def compression_ratio(text: str) -> float:
    """Whisper's measure of repetitiveness: UTF-8 bytes over their zlib-compressed size."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def normalise(text: str) -> str:
    """Case, punctuation and spacing folded: "Thank you." == "thank you" (letters, digits, - and ' kept)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(c if c.isalnum() or c in "-'" or c.isspace() else "" for c in text)
    return " ".join(kept.split())


def units(text: str) -> list[str]:
    """Words, or characters for text written without spaces (Chinese, Japanese, Thai)."""
    words = normalise(text).split()
    if len(words) <= 2 and sum(len(w) for w in words) > 8:
        return [c for w in words for c in w]
    return words


def find_loop(tokens: Sequence[str]) -> tuple[int, int, int] | None:
    """(start, n, repeats) of the longest run of one n-gram repeated LOOP_REPEATS+ times in a row, over LOOP_UNITS
    units; None if there is none."""
    best: tuple[int, int, int] | None = None
    size = len(tokens)
    for n in range(1, min(MAX_N, size // LOOP_REPEATS) + 1):
        start = 0
        while start + n * LOOP_REPEATS <= size:
            repeats = 1
            while tokens[start + repeats * n : start + (repeats + 1) * n] == tokens[start : start + n]:
                repeats += 1
            if repeats >= LOOP_REPEATS and repeats * n >= LOOP_UNITS:
                if best is None or repeats * n > best[1] * best[2]:
                    best = (start, n, repeats)
                start += repeats * n
            else:
                start += 1
    return best


def loop_share(tokens: Sequence[str]) -> float:
    """The share of `tokens` taken by their longest loop (0 if none)."""
    loop = find_loop(tokens)
    return loop[1] * loop[2] / len(tokens) if loop else 0.0


def trim_loop(segment: Segment, limits: Limits) -> tuple[Segment, Removed] | None:
    """A loop said with confidence is cut back to its first time round (Whisper's classic failure on speech: the
    right sentence, then the same again and again); the segment and the record of what was cut. None where there is
    no loop, where the decoder was not confident (then `verdict` removes it all) or in text without spaces."""
    if not limits.repetition_filter or not _confident(segment, limits):
        return None
    raw = segment.text.split()
    folded = [normalise(token) for token in raw]
    at = [i for i, token in enumerate(folded) if token]  # raw index of each unit
    loop = find_loop([folded[i] for i in at])
    if loop is None or loop[1] * loop[2] < LOOP_SHARE * len(at):
        return None
    start, n, repeats = loop
    first_cut, last_cut = at[start + n], at[start + n * repeats - 1]
    kept = raw[:first_cut] + raw[last_cut + 1 :]
    cut = " ".join(raw[first_cut : last_cut + 1])
    words = segment.words if len(segment.words) == len(raw) else ()
    if words:
        record = Removed(words[first_cut].start, words[last_cut].end, cut, f"loop ({repeats - 1} repeats cut)")
        words = words[:first_cut] + words[last_cut + 1 :]
        trimmed = replace(segment, text=" ".join(kept), words=words, end=max(segment.start, words[-1].end))
    else:
        record = Removed(segment.start, segment.end, cut, f"loop ({repeats - 1} repeats cut)")
        trimmed = replace(segment, text=" ".join(kept), words=())
    return trimmed, record


def _above(value: float | None, limit: float | None) -> bool:
    return value is not None and limit is not None and value > limit


def _below(value: float | None, limit: float | None) -> bool:
    return value is not None and limit is not None and value < limit


def _confident(segment: Segment, limits: Limits) -> bool:
    """The decoder was sure of it: a log prob over the threshold, and no high no-speech probability."""
    lp, nsp = segment.avg_logprob, segment.no_speech_prob
    sure = lp is not None and (limits.log_prob_threshold is None or lp >= limits.log_prob_threshold)
    return sure and not _above(nsp, limits.no_speech_threshold)


def _low_confidence(segment: Segment, limits: Limits) -> bool:
    return _below(segment.avg_logprob, limits.log_prob_threshold) or _above(
        segment.no_speech_prob, limits.no_speech_threshold
    )


def verdict(segment: Segment, limits: Limits) -> str | None:
    """Why `segment` on its own is not speech, or None."""
    text = segment.text.strip()
    nsp, lp = segment.no_speech_prob, segment.avg_logprob
    # Whisper's rule for a silent window, for the paths that do not apply it (faster-whisper batched).
    if _above(nsp, limits.no_speech_threshold) and _below(lp, limits.log_prob_threshold):
        return f"no speech (no-speech probability {nsp:.2f}, log prob {lp:.2f})"
    ratio, limit = compression_ratio(text), limits.compression_ratio_threshold
    # Over the threshold Whisper retries hotter; what is still over it is a loop if the decoder was unsure too, or
    # if it is far over (real speech can repeat itself: JFK's "ask not what your country ..." is 2.5 on its own).
    unsure = _below(lp, limits.log_prob_threshold)
    if limit is not None and ratio > limit and (unsure or ratio > LOOP_COMPRESSION * limit):
        return f"repetitive (compression ratio {ratio:.1f} > {limit:g})"
    if not limits.repetition_filter:
        return None
    if not any(c.isalnum() for c in _TAG.sub("", text)):
        return "no words (music, noise or a sound tag)"
    tokens = units(text)
    if (share := loop_share(tokens)) >= LOOP_SHARE:
        return f"loop (a phrase repeated over {share:.0%} of the segment)"
    if normalise(text) in FILLERS and _low_confidence(segment, limits):
        return "filler phrase with low confidence"
    return None


def filter_segments(segments: Sequence[Segment], limits: Limits) -> Filtered:
    """The segments worth keeping, and a record of each removed one (time, text, reason). Pure."""
    kept: list[Segment] = []
    removed: list[Removed] = []
    run: list[Segment] = []  # consecutive kept segments with the same text

    def flush() -> None:
        if len(run) >= REPEATED_SEGMENTS and limits.repetition_filter:
            # A filler said again and again is Whisper's, every copy; anything else keeps its first.
            first = 0 if normalise(run[0].text) in FILLERS else 1
            kept.extend(run[:first])
            reason = f"repeated segment ({len(run)} in a row)"
            removed.extend(Removed(s.start, s.end, s.text, reason) for s in run[first:])
        else:
            kept.extend(run)
        run.clear()

    for segment in segments:
        if trimmed := trim_loop(segment, limits):
            segment = trimmed[0]
            removed.append(trimmed[1])
        if reason := verdict(segment, limits):
            removed.append(Removed(segment.start, segment.end, segment.text, reason))
            continue
        if run and normalise(run[-1].text) != normalise(segment.text):
            flush()
        run.append(segment)
    flush()
    removed.sort(key=lambda r: (r.start, r.end))
    return Filtered(tuple(replace(s, avg_logprob=None, no_speech_prob=None) for s in kept), tuple(removed))
