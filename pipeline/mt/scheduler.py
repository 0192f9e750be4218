"""The translate stage's routes, side by side: each target track made once, by the first route whose hop reaches
its language, and awaited by the routes that pivot through it.

Speech -> English hops (engine "whisper") run an ASR worker: in the caller's thread, where Ctrl-C stops it at
once, before the text routes that start from its track. Text hops run in a pool, a route per thread."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import replace

from pipeline.asr import Transcript
from pipeline.mt import Engine
from pipeline.mt.routing import WHISPER, Hop, Route

MT_THREADS = min(8, max(2, os.cpu_count() or 1))  # a route per core: Apertium and CTranslate2 are CPU-bound


class Schedule:
    """The tracks of `routes` to make: `ready` holds those that exist already (the source, an earlier run's
    targets); each other track is a future, made by the first route whose hop reaches its language."""

    def __init__(self, routes: Sequence[Route], source: Transcript, ready: Mapping[str, Transcript]) -> None:
        self.source = source
        self.tracks: dict[str, Future[Transcript]] = {source.language: _resolved(source)}
        for language, track in ready.items():
            self.tracks.setdefault(language, _resolved(track))
        self.plans: list[tuple[Route, dict[str, Future[Transcript]]]] = []
        for route in routes:
            made: dict[str, Future[Transcript]] = {}
            for hop in route.hops:
                if hop.tgt not in self.tracks:
                    self.tracks[hop.tgt] = made[hop.tgt] = Future()
            self.plans.append((route, made))

    def speak(self, speak: Callable[[Hop], Transcript]) -> None:
        """Make the speech -> English tracks, in this thread, with `speak` (an ASR worker)."""
        for route, made in self.plans:
            for hop in route.hops:
                if hop.engine == WHISPER and hop.tgt in made:
                    made.pop(hop.tgt).set_result(replace(speak(hop), language=hop.tgt, task="translate"))

    def run(
        self,
        engine: Callable[[str], Engine],
        write: Callable[[Transcript], object],
        on_finished: Callable[[], None] = lambda: None,
    ) -> None:
        """Every route's text hops, side by side; `write` gets each route's target track as the route ends, then
        `on_finished` is called. A failed route fails the routes waiting for its tracks; the others go on, and
        the first failure is raised once all have ended."""
        with ThreadPoolExecutor(MT_THREADS) as pool:
            running = [
                pool.submit(_follow, route, self.source, self.tracks, made, engine, write) for route, made in self.plans
            ]
            failures = []
            try:
                for future in as_completed(running):
                    if error := future.exception():  # the other routes go on: a re-run redoes only this one
                        failures.append(error)
                    else:
                        on_finished()
            except BaseException:  # Ctrl-C: no new route starts; those running finish and keep their outputs
                for future in running:
                    future.cancel()
                raise
        if failures:
            raise failures[0]


def _resolved(transcript: Transcript) -> Future[Transcript]:
    future: Future[Transcript] = Future()
    future.set_result(transcript)
    return future


def _follow(
    route: Route,
    source: Transcript,
    tracks: dict[str, Future[Transcript]],
    made: dict[str, Future[Transcript]],
    engine: Callable[[str], Engine],
    write: Callable[[Transcript], object],
) -> None:
    """One route's text hops, in a pool thread: the tracks it was given to make (`made`) it makes and publishes;
    the others it waits for. Whatever it fails to make fails the routes waiting for it too."""
    current = source
    try:
        for hop in route.hops:
            if hop.tgt not in made:
                current = tracks[hop.tgt].result()
                continue
            texts = engine(hop.engine).translate([s.text for s in current.segments], hop.src, hop.tgt)
            current = replace(
                current,
                language=hop.tgt,
                task="translate",
                backend=hop.engine,
                segments=tuple(replace(s, text=t, words=()) for s, t in zip(current.segments, texts, strict=True)),
            )
            made[hop.tgt].set_result(current)
    except BaseException as error:
        for future in made.values():
            if not future.done():
                future.set_exception(error)
        raise
    write(current)
