"""The driver's loop over Ray: one long-lived actor per device (`cluster.JobRunner`), each kept fed with jobs,
longest first; an actor that dies is replaced and its file retried; Ctrl-C stops the running jobs as a single
run's Ctrl-C stops them."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.batch.inputs import Item
from pipeline.batch.report import Display, Row, read_job
from pipeline.errors import PipelineError

BUSY_WAIT_S = 2.0  # how often a job held by another run is looked at again
STOP_WAIT_S = 60.0  # after Ctrl-C: time for the running jobs to record `interrupted`


@dataclass
class Actor:
    handle: Any
    ready: Any  # the `where` call: resolved once the actor runs
    info: dict[str, Any] = field(default_factory=dict)
    job: int | None = None  # the row it runs
    call: Any = None

    @property
    def label(self) -> str:
        return f"{self.info.get('host', '?')}:{self.info.get('pid', '?')}"


@dataclass
class Run:
    """A batch on Ray: its jobs, their rows, and the actors running them."""

    items: list[Item]
    rows: list[Row]
    out_root: Path
    retries: int
    options: dict[str, Any]  # each actor's Ray resources (`cluster.actor_options`)
    display: Display
    settings: dict[str, str] = field(default_factory=dict)  # each run's own (`run_settings`)
    ray: Any = None
    interrupted: bool = False
    nodes: set[str] = field(default_factory=set)  # Ray node ids that ran a job
    queue: list[tuple[float, int]] = field(default_factory=list)  # (not before, row)
    pool: list[Actor] = field(default_factory=list)
    runner: Any = None
    start_failures: int = 0  # actors that died before they ran a job


def default_workers(ray: Any, options: dict[str, Any]) -> int:
    """One actor per device: per GPU for a GPU profile, else per CPU of the cluster (the local instance's CPUs)."""
    total = ray.cluster_resources()
    if options.get("num_gpus"):
        return max(1, int(total.get("GPU", 0) // options["num_gpus"]))
    return max(1, int(total.get("CPU", 1) // max(options.get("num_cpus", 1), 1)))


def run_on_ray(run: Run, todo: list[int], workers: int | None) -> None:
    """Run the rows `todo` on `workers` actors (default: one per device) until each has ended or Ctrl-C."""
    from pipeline.batch.cluster import JobRunner

    ray = run.ray
    if run.options["num_gpus"] and not ray.cluster_resources().get("GPU"):  # its actors would wait forever
        raise PipelineError("the Ray cluster has no GPU for this batch's profile; allowed: a cluster with GPU nodes")
    run.runner = ray.remote(max_restarts=0, max_concurrency=1)(JobRunner)
    count = min(workers or default_workers(ray, run.options), len(todo))
    # Longest first: the files still running when the others are done are then short ones, and the actors end
    # together instead of one finishing a long file alone (the table keeps the order given).
    longest = sorted(todo, key=lambda i: -(run.rows[i].duration_s or 0.0))
    run.queue = [(0.0, i) for i in longest]
    # Again after ray.init, whose core installs its own SIGTERM handler in the driver (it would exit at once).
    with contextlib.redirect_stdout(sys.stderr), stop_signals():
        run.pool = [_start(run) for _ in range(count)]
        try:
            while run.queue or any(a.job is not None for a in run.pool):
                _step(run)
        except KeyboardInterrupt:
            run.interrupted = True
            _stop(run)
        _close(run)


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP (kill, a closed terminal) stop the batch as Ctrl-C does."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _close(run: Run) -> None:
    """Each actor stops its served ASR worker, which removes its folder from the output root (Ray's own end of
    the actors is a SIGKILL); one that does not answer in time is left to `served.sweep`."""
    ray = run.ray
    # Not one still busy with a job that did not stop (Ctrl-C): its close would wait for it.
    idle = [a for a in run.pool if a.info and (a.call is None or ray.wait([a.call], timeout=0)[0])]
    closing = [actor.handle.close.remote() for actor in idle]
    with contextlib.suppress(Exception, KeyboardInterrupt):
        if closing:
            ray.wait(closing, num_returns=len(closing), timeout=STOP_WAIT_S / 6)


def _start(run: Run) -> Actor:
    """A new actor; its ASR worker starts loading for the next job due as the actor starts (`JobRunner`)."""
    warm = None
    if due := [i for _, i in run.queue if run.items[i].folder is not None]:
        warm = (str(run.items[due[0]].folder), run.settings)
    handle = run.runner.options(**run.options).remote(os.environ.get("OMP_NUM_THREADS"), str(run.out_root), warm)
    return Actor(handle, handle.where.remote())


def _step(run: Run) -> None:
    """Start what can start, then take what ended (waiting at most half a second for it)."""
    ray, pool = run.ray, run.pool
    for actor in [a for a in pool if not a.info]:  # newly started actors, once running
        if ray.wait([actor.ready], timeout=0)[0]:
            try:
                actor.info = ray.get(actor.ready)
            except ray.exceptions.RayError as exc:  # it died starting: another takes its place, a few times
                run.start_failures += 1
                if run.start_failures > len(pool) * (run.retries + 1):  # they all fail (its code, its node's)
                    reason = " ".join(str(exc).split())[-200:]
                    raise PipelineError(
                        f"Ray's device actors die as they start ({reason}); allowed: a Ray "
                        "cluster whose nodes run this pipeline (see the actors' Ray logs)"
                    ) from None
                pool[pool.index(actor)] = _start(run)
    for actor in [a for a in pool if a.info and a.job is None]:
        index = _next(run)
        if index is None:
            break
        row = run.rows[index]
        actor.job, row.state, row.worker, row.node = index, "running", actor.label, actor.info.get("node", "")
        row.attempts += 1
        actor.call = actor.handle.run.remote(str(run.items[index].folder), str(run.out_root), run.settings)
        run.display.workers[actor.label] = row.file
        run.display.event(row, "started", actor.label)
    # Whichever comes first: a job's end or an actor up (never a busy loop: the driver's CPU is the actors' too).
    waiting = [a.call for a in pool if a.call is not None] + [a.ready for a in pool if not a.info]
    if waiting:
        done = ray.wait(waiting, num_returns=1, timeout=0.5)[0]
    else:  # only jobs held elsewhere are left, looked at again later (BUSY_WAIT_S)
        done = []
        time.sleep(0.5)
    for actor in [a for a in pool if a.call is not None and a.call in done]:
        _ended(run, actor)
    run.display.refresh()


def _next(run: Run) -> int | None:
    """The next row due; a job that another run (a second batch) finished meanwhile is done, not run again."""
    while ready := next((q for q in run.queue if q[0] <= time.monotonic()), None):
        run.queue.remove(ready)
        row, folder = run.rows[ready[1]], run.items[ready[1]].folder
        if folder is not None and read_job(row, folder) and not row.error:
            row.state, row.earlier = "done", True
            run.display.event(row, "done elsewhere")
            continue
        row.error = ""
        return ready[1]
    return None


def _ended(run: Run, actor: Actor) -> None:
    ray = run.ray
    job, call = actor.job, actor.call
    assert job is not None
    actor.job = actor.call = None
    row = run.rows[job]
    run.display.workers.pop(actor.label, None)
    try:
        outcome = ray.get(call)
    except ray.exceptions.RayError as exc:  # the actor's process died (killed, its node lost)
        run.pool[run.pool.index(actor)] = _start(run)  # Ray places the new one wherever there is room
        if row.attempts <= run.retries:
            row.state = "pending"
            run.queue.append((0.0, job))
            run.display.event(row, f"worker {actor.label} died; retrying")
            return
        outcome = {"state": "failed", "error": f"its worker died {row.attempts} times ({type(exc).__name__})"}
    if outcome["state"] == "busy":  # another run holds the job: look again later, never run it twice
        row.state, row.attempts = "pending", row.attempts - 1
        run.queue.append((time.monotonic() + BUSY_WAIT_S, job))
        return
    run.nodes.add(actor.info.get("node", ""))
    _finish(row, run.items[job], outcome)
    run.display.event(row, row.state)


def _finish(row: Row, item: Item, outcome: dict[str, Any]) -> None:
    complete = item.folder is not None and read_job(row, item.folder)
    if outcome["state"] == "done" and complete:
        row.state, row.error = "done", ""
    else:
        row.state = "interrupted" if outcome["state"] == "interrupted" else "failed"
        row.error = outcome.get("error") or row.error or "the job did not finish"


def _stop(run: Run) -> None:
    """Ctrl-C: SIGTERM each busy actor's process, which the job's run takes as a single run takes Ctrl-C (the
    stage is recorded `interrupted`, the ASR worker stopped); wait for them to say so."""
    ray, rows = run.ray, run.rows
    busy = [a for a in run.pool if a.call is not None]
    for actor in busy:
        _signal(ray, actor.info)
    deadline = time.monotonic() + STOP_WAIT_S
    for actor in busy:
        assert actor.job is not None
        row = rows[actor.job]
        try:
            outcome = ray.get(actor.call, timeout=max(1.0, deadline - time.monotonic()))
        except (ray.exceptions.RayError, KeyboardInterrupt):
            outcome = {"state": "interrupted", "error": "stopped"}
        _finish(row, run.items[actor.job], outcome)
        if row.state != "done":
            row.state, row.error = "interrupted", "interrupted; the job resumes on the next run"
    for row in rows:
        if row.state in ("pending", "running"):
            row.state, row.error = "interrupted", "not started; the next run does it"
    run.display.refresh()


def _signal(ray: Any, info: dict[str, Any]) -> None:
    if not info:
        return
    if info.get("node") == ray.get_runtime_context().get_node_id():
        with contextlib.suppress(OSError):
            os.kill(info["pid"], signal.SIGTERM)
        return
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # On another node: a tiny task there sends the signal.
    kill = ray.remote(num_cpus=0)(os.kill).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(info["node"], soft=False)
    )
    with contextlib.suppress(Exception):
        ray.get(kill.remote(info["pid"], signal.SIGTERM), timeout=10)
