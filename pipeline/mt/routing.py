"""Which engine translates the transcript into each target language, pivoting through English.

Speech -> English is Whisper's own translate task (hop engine "whisper", run by the ASR layer); every
other hop is a text engine. A route is planned once, stored in the job manifest, and replayed on resume.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pipeline.errors import PipelineError
from pipeline.mt import Engine

WHISPER = "whisper"
PIVOT = "en"


@dataclass(frozen=True)
class Hop:
    engine: str  # an engine name, or "whisper" for speech -> English
    src: str
    tgt: str


@dataclass(frozen=True)
class Route:
    target: str
    hops: tuple[Hop, ...] = ()  # no hops: the target is the source language itself

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "hops": [asdict(hop) for hop in self.hops]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Route:
        try:
            hops = tuple(Hop(str(h["engine"]), str(h["src"]), str(h["tgt"])) for h in data["hops"])
            return cls(str(data["target"]), hops)
        except (KeyError, TypeError, ValueError) as error:
            raise PipelineError(f"malformed translation route in job manifest: {data!r} ({error})") from None


def plan_routes(
    source: str, targets: Sequence[str], engines: Sequence[Engine], speech_to_english: bool = True
) -> dict[str, Route]:
    """A route for every target, or a PipelineError naming every target no engine reaches.

    `engines` come most preferred first (as `available_engines` returns them). Rules, in order: the
    source itself needs no hop; a direct text pair; English from Whisper's speech translation; else
    source -> English (text pair, else Whisper) then English -> target.
    """
    by_pair: dict[tuple[str, str], str] = {}
    for engine in engines:
        for pair in engine.pairs():
            by_pair.setdefault(pair, engine.name)
    whisper_ok = speech_to_english and source != PIVOT

    def hop(src: str, tgt: str) -> Hop | None:
        if (src, tgt) in by_pair:
            return Hop(by_pair[src, tgt], src, tgt)
        if whisper_ok and src == source and tgt == PIVOT:
            return Hop(WHISPER, source, PIVOT)
        return None

    routes: dict[str, Route] = {}
    missing: list[str] = []
    for target in dict.fromkeys(targets):  # keep order, drop duplicates
        if target == source:
            routes[target] = Route(target)
        elif direct := hop(source, target):
            routes[target] = Route(target, (direct,))
        elif (first := hop(source, PIVOT)) and (second := hop(PIVOT, target)):
            routes[target] = Route(target, (first, second))
        else:
            missing.append(f"{source}->{target}")
    if missing:
        raise PipelineError(
            f"no engine translates {', '.join(missing)}; available: {describe(engines, source, whisper_ok)}"
        )
    return routes


def describe(engines: Sequence[Engine], source: str = "", speech_to_english: bool = False) -> str:
    """What each engine covers, compactly: "whisper speech->en; apertium en->{ca,es}, es->en; ..."."""
    parts = [f"{WHISPER} speech->{PIVOT}"] if speech_to_english and source != PIVOT else []
    for engine in engines:
        parts.append(f"{engine.name} {_compact(engine.pairs())}")
    return "; ".join(parts) or "no translation engine is installed"


def _compact(pairs: frozenset[tuple[str, str]]) -> str:
    if not pairs:
        return "(no pairs installed)"
    languages = sorted({lang for pair in pairs for lang in pair})
    if len(languages) > 2 and len(pairs) == len(languages) * (len(languages) - 1):
        shown = ",".join(languages[:12]) + (",..." if len(languages) > 12 else "")
        return f"any pair of {len(languages)} languages ({shown})"
    by_src: dict[str, list[str]] = defaultdict(list)
    for src, tgt in sorted(pairs):
        by_src[src].append(tgt)
    out: list[str] = []
    for src, tgts in by_src.items():
        if len(tgts) == 1 and by_src.get(tgts[0]) == [src]:  # a<->b, said once
            if src < tgts[0]:
                out.append(f"{src}<->{tgts[0]}")
        elif len(tgts) == 1:
            out.append(f"{src}->{tgts[0]}")
        else:
            out.append(f"{src}->{{{','.join(tgts)}}}")
    return ", ".join(out)
