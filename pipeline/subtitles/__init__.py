"""Subtitle layout: cues from segments under the reading rules (pipeline.subtitles.cues), and speakers as users
see them (pipeline.subtitles.speakers). The files themselves are written by pipeline.writers."""

from pipeline.subtitles.cues import DIALOGUE_DASH, Cue, CueWord, ReadingRules, build_cues
from pipeline.subtitles.speakers import display_names

__all__ = ["DIALOGUE_DASH", "Cue", "CueWord", "ReadingRules", "build_cues", "display_names"]
