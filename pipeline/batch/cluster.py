"""Ray: a local instance sized to the machine, or a cluster joined by address; and the long-lived actor per device
that runs one ordinary job at a time (`workflow.run`, in the actor's main thread, where the job's own signal
handling works). Ray is imported here only, and only when a batch starts."""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.profiles import Profile

PACKAGE = Path(__file__).resolve().parents[1]  # the `pipeline` package the driver imported


def actor_options(profile: Profile, local_gpus: int, joined: bool) -> dict[str, Any]:
    """Ray resources of one device actor: a cuda profile's actor holds a GPU (Ray then sets CUDA_VISIBLE_DEVICES
    for it, and the ASR worker it starts inherits that); every actor holds a CPU for the job's cheap stages.

    Jobs are planned where `pipeline batch` runs (`workflow.prepare`), and a job runs the plan it was prepared
    with. So a cuda batch on a machine without a GPU runs on its CPU, as a single run there does, and joins a
    cluster only from a machine with a GPU: planned elsewhere, its jobs would run on the GPU nodes' CPUs."""
    if profile.runtime.device != "cuda":
        return {"num_cpus": 1, "num_gpus": 0}
    if local_gpus:
        return {"num_cpus": 1, "num_gpus": 1}
    if joined:
        raise PipelineError(
            f"profile {profile.name} needs a GPU, and this machine has none: jobs are planned where `pipeline "
            "batch` runs; allowed: run it on a GPU node of the cluster"
        )
    return {"num_cpus": 1, "num_gpus": 0}


def connect(address: str | None, num_cpus: int | None = None) -> Any:
    """Start a local Ray instance (no address) or join a cluster (`auto`, HOST:PORT); returns the ray module."""
    try:
        import ray
    except ImportError:
        raise PipelineError(
            "pipeline batch needs Ray; allowed: install it (pip install 'pipeline[batch]' or pip install ray)"
        ) from None
    common: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
    if address is None:
        # The local raylet and its workers inherit the driver's environment: they import this same `pipeline`.
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE.parent), os.environ.get("PYTHONPATH")) if p)
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report from an offline tool
        # No task events: they feed Ray's state API and dashboard, which a local batch does not start, and
        # ray.shutdown waited for their last flush.
        os.environ.setdefault("RAY_task_events_report_interval_ms", "0")
        # The raylet's first try to reach its object store, a moment after starting it, often fails, and the
        # retry came a whole second later: tries every 0.1 s instead, ten times as many (the same 10 s in all).
        os.environ.setdefault("RAY_raylet_client_connect_timeout_milliseconds", "100")
        os.environ.setdefault("RAY_raylet_client_num_connect_attempts", "100")
        try:
            with _lean_head():
                ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, **common)
        except Exception as exc:  # Ray's own processes did not come up: one line, not Ray's traceback
            with contextlib.suppress(Exception):
                ray.shutdown()  # what did start
            raise PipelineError(
                f"cannot start a local Ray instance: {' '.join(str(exc).split())[:200]}; allowed: a machine where "
                "Ray's processes can start (see Ray's logs under its temporary folder), or --address of a cluster"
            ) from None
        return ray
    try:
        # The driver's code on every node (Ray uploads the package once); the nodes' own installs stay untouched.
        ray.init(address=address, runtime_env={"py_modules": [str(PACKAGE)]}, **common)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise PipelineError(
            f"cannot join the Ray cluster at {address}: {' '.join(str(exc).split())[:200]}; "
            "allowed: auto or HOST:PORT of a running Ray head (`ray start --head`)"
        ) from None
    return ray


@contextlib.contextmanager
def _lean_head() -> Iterator[None]:
    """A local instance without three processes of Ray's head that a batch never uses: the dashboard's API server
    (ray.init waits for it to come up, even with include_dashboard=False), the autoscaler monitor and the log
    monitor (log_to_driver is off). Their start took CPU from the raylet's agents, whose registration ray.init
    polls for in whole seconds (what it cost: benchmarks/README.md, batch-8-clips). ray.init has no switch for
    them: while it runs, the head node it builds is this subclass of Ray's own, which sets the two switches `ray
    start` has and skips the API server. A Ray whose internals moved starts what it always did (`tests/batch`
    checks that this one does not)."""
    try:
        ray_node: Any = importlib.import_module("ray._private.node")
        base: Any = ray_node.Node
    except (ImportError, AttributeError):
        yield
        return

    class LeanHead(base):
        def __init__(self, ray_params: Any, *args: Any, **kwargs: Any) -> None:
            if kwargs.get("head"):
                ray_params.no_monitor, ray_params.include_log_monitor = True, False
            super().__init__(ray_params, *args, **kwargs)

        def start_api_server(self, **kwargs: Any) -> None:
            """Not started: no dashboard, job or state API on a local batch's instance."""

    ray_node.Node = LeanHead
    try:
        yield
    finally:
        ray_node.Node = base


def shutdown(ray: Any) -> None:
    """Stop Ray (the local instance's processes with it). Its autoscaler monitor is ended first, by SIGKILL: on
    ray.shutdown's SIGTERM, which comes once the GCS is gone, it tries to report its end to the GCS and holds the
    shutdown a second until Ray kills it anyway. A local batch has no autoscaler state to lose."""
    node = getattr(getattr(ray, "_private", None), "worker", None)
    node = getattr(node, "_global_node", None)
    if getattr(node, "head", False):  # a local instance this driver started (none when it joined a cluster)
        for info in getattr(node, "all_processes", {}).get("monitor", ()):
            with contextlib.suppress(OSError):
                info.process.kill()
                info.process.wait(timeout=5)
    ray.shutdown()


def check_local() -> None:
    """A local instance's processes talk over 127.0.0.1. With the loopback down (a network namespace of its own,
    `unshare -n`) Ray's start timed out after many minutes and ended in Ray's traceback: an error now instead."""
    try:
        with socket.create_server(("127.0.0.1", 0)) as server:
            socket.create_connection(server.getsockname()[:2], timeout=10).close()
    except OSError as exc:
        raise PipelineError(
            f"cannot start a local Ray instance: no loopback network (127.0.0.1: {exc.strerror or exc}); allowed: "
            "a machine whose loopback interface is up, or --address of a running Ray cluster"
        ) from None


def check_address(address: str) -> None:
    """A HOST:PORT that nothing answers is an error now: ray.init would retry it for minutes. (`auto` without
    RAY_ADDRESS, and ray:// addresses, are left to Ray, which says what is wrong.)"""
    target = os.environ.get("RAY_ADDRESS", "") if address == "auto" else address
    if not target or "://" in target:
        return
    host, _, port = target.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=10).close()
    except (OSError, ValueError) as exc:
        reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else "not HOST:PORT"
        raise PipelineError(
            f"cannot reach the Ray cluster at {target} ({reason}); allowed: auto or HOST:PORT of a running Ray "
            "head (`ray start --head`)"
        ) from None


class JobRunner:
    """One device's worker: runs jobs one after another, each through the library API with the same folders and
    outputs as a single run. It keeps one served ASR worker (`pipeline.asr.served`): an isolated subprocess that
    loads its model once, as the actor starts (for the job due first), and transcribes every job with the same
    load fields (a job with other ones gets a fresh one). A backend crash costs that file's attempt, not this
    actor, and the next job gets a fresh served worker."""

    def __init__(self, threads: str | None, out_root: str, warm: tuple[str, dict[str, str]] | None = None) -> None:
        import atexit

        from pipeline.asr.served import ServedWorker

        # Ray sets OMP_NUM_THREADS to an actor's CPUs; the job's ASR worker would inherit it, and with it a
        # transcript lost a comma (WHISPER_THREADS=1 changed nothing): the driver's value, so that a batch gives
        # the outputs single runs give.
        if threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = threads
        # Its folder in the output root; its lifeline ends it with this process too.
        self.served = ServedWorker(root=Path(out_root))
        atexit.register(self.served.shutdown)
        if warm is not None:
            self._warm(*warm)

    def _warm(self, folder: str, settings: dict[str, str]) -> None:
        """Start the served worker loading for the job the driver will likely send first (`warm`: its folder
        and run settings) while Ray starts the other actors and this one reports in. Only a hint: should the job's
        run resolve another plan, the worker is replaced by one for it; on any error the job starts its own."""
        from pipeline import config, jobs
        from pipeline.stages import Context, serve_start

        try:
            manifest = jobs.Manifest.load(Path(folder))
            cfg = config.load(job_dir=Path(folder), cli=settings, job_flags=manifest.flags)
            plan = manifest.plan
            if plan is not None:
                serve_start(Context(Path(folder), cfg, manifest, plan, Path(folder) / "pipeline.log"), self.served)
        except Exception as exc:  # a hint only: the job's own run reports what is wrong with it
            print(f"pipeline: batch: no early ASR worker ({type(exc).__name__}: {exc})", file=sys.stderr)

    def close(self) -> None:
        """Stop the served worker and remove its folder, before Ray ends this process (with SIGKILL, which
        would leave the folder in the output root)."""
        self.served.shutdown()

    def where(self) -> dict[str, Any]:
        import ray

        context = ray.get_runtime_context()
        return {
            "pid": os.getpid(),
            "node": context.get_node_id(),
            "host": socket.gethostname(),
            "gpus": [str(g) for g in ray.get_gpu_ids()],
        }

    def run(self, folder: str, out_root: str, settings: dict[str, str]) -> dict[str, Any]:
        from pipeline import jobs, workflow
        from pipeline.errors import Interrupted

        start = time.monotonic()
        state, error = "done", None
        if jobs.runner_alive(Path(folder)):  # another batch or `pipeline run` has it: never run a job twice
            return {"state": "busy", "error": None, "wall_s": 0.0}
        # In this worker's Ray log (on its node): which job ran where, beside the job's own stage lines.
        print(f"pipeline: batch: job {Path(folder).name} on {socket.gethostname()} pid {os.getpid()}", file=sys.stderr)
        try:
            workflow.run(folder, settings, out_root=Path(out_root), served=self.served)
        except Interrupted:
            state = "interrupted"
        except PipelineError as exc:
            state, error = ("busy", None) if jobs.runner_alive(Path(folder)) else ("failed", str(exc))
        except Exception as exc:  # reported in the batch's table; the actor goes on
            state, error = "failed", f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        return {"state": state, "error": error, "wall_s": round(time.monotonic() - start, 3)}
