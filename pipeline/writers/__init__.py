"""Writers: transcripts (JSON, TXT) and subtitles (SRT, VTT, ASS; burned into the video) from the cue layout of
pipeline.subtitles, with speakers where the job found them."""

from pipeline.writers.ass import AssOptions
from pipeline.writers.subtitles import SUBTITLE_FORMATS, read_subtitles, write_subtitles
from pipeline.writers.transcript import transcript_dict, write_transcript_json, write_transcript_txt

__all__ = [
    "SUBTITLE_FORMATS",
    "AssOptions",
    "read_subtitles",
    "transcript_dict",
    "write_subtitles",
    "write_transcript_json",
    "write_transcript_txt",
]
