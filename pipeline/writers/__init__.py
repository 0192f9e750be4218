"""Writers: transcripts (JSON, TXT) and subtitles (SRT, VTT) that follow reading rules."""

from pipeline.writers.cues import Cue, ReadingRules, build_cues
from pipeline.writers.subtitles import SUBTITLE_FORMATS, read_subtitles, write_subtitles
from pipeline.writers.transcript import transcript_dict, write_transcript_json, write_transcript_txt

__all__ = [
    "SUBTITLE_FORMATS",
    "Cue",
    "ReadingRules",
    "build_cues",
    "read_subtitles",
    "transcript_dict",
    "write_subtitles",
    "write_transcript_json",
    "write_transcript_txt",
]
