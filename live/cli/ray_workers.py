"""The Ray side of `--ray`: joining a cluster, the FrameWorker actors that render frames
and sweep cells, and a queue that keeps every worker busy and gives a lost worker's
unfinished work to the others. `live.cli.cluster` says what the work is.

A pool of workers is started on a call's first need and kept warm in this process for
the next call (a second render does not import torch and load the model again); the
command line makes one call, and its workers end with it.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import numpy as np

from live.cli.render import RenderError, RenderJob

log = logging.getLogger("netbend.cluster")  # one logger for both modules

INSTALL = "pip install -e '.[cluster]'"
START_TIMEOUT_S = 300.0  # a worker that has not started by then is waiting for a CPU/GPU that is not free
RESTARTS = 3  # Ray restarts a dead actor this many times before its frames go to the others only


class RayUnavailable(RenderError):
    """--ray was asked for and Ray is not installed."""


def require_ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable(f"--ray needs Ray, which is not installed; install the cluster extra: {INSTALL} "
                             "(or pip install 'ray>=2.40')") from None
    return ray


def lost_errors() -> tuple[type, ...]:
    """Ray's errors for a worker that went away (killed, crashed, its node lost), as
    opposed to an exception raised by netbend's code on the worker (RayTaskError)."""
    from ray import exceptions as rx

    return (rx.RayActorError, rx.WorkerCrashedError, rx.NodeDiedError, rx.ObjectLostError)


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Ray waits minutes on an address that does not answer; a TCP connect says so in seconds."""
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RenderError(f"bad --ray address {address!r}; write auto, HOST:PORT (the head node's GCS port, "
                          "6379 by default) or ray://HOST:PORT (Ray Client, 10001 by default)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise RenderError(f"cannot reach the Ray cluster at {address!r} ({e.strerror or e}); start one with "
                          "`ray start --head` and pass its HOST:PORT, or use --ray auto") from None


class Cluster:
    """Joined for the length of a ``with``: ``auto`` joins the cluster in RAY_ADDRESS or the
    one `ray start` made on this machine, or else starts a local one; an address joins that
    cluster. A Ray already initialised in this process (a test's) is used as it is."""

    def __init__(self, address: str = "auto"):
        self.address = address or "auto"
        self._started = False

    def __enter__(self) -> "Cluster":
        ray = require_ray()
        if self.address != "auto":
            check_reachable(self.address)
        if not ray.is_initialized():
            ray.init(address=None if self.address == "auto" else self.address, logging_level=logging.WARNING)
            self._started = True
            log.info("ray: joined the cluster at %s", ray.get_runtime_context().gcs_address)
        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        self.cpus = int(resources.get("CPU", 0))
        return self

    def __exit__(self, *exc) -> None:
        if self._started:
            release_workers()
            require_ray().shutdown()

    def slots(self) -> int:
        """How many actors fit: one per GPU where there are GPUs, else one per CPU."""
        return self.gpus if self.gpus else self.cpus


class FrameWorker:
    """The Ray actor: renders frames and sweep cells with what it loaded once per job.

    Calls name their job by a key and carry its spec (the job, its preset and audio, as
    the driver read them: a worker needs neither the preset file nor the audio file), so
    a restarted actor rebuilds what it lost from the next call it gets."""

    def __init__(self, device: str):
        self.device = device
        self.models: dict[tuple, object] = {}  # loaded once, shared by every job that names it
        self.sources: dict[str, object] = {}
        self.used: set[str] = set()  # sources whose frames were taken (a feedback render needs a fresh one)
        self.sweeps: dict[str, object] = {}

    def describe(self) -> dict:
        import ray

        return {"host": socket.gethostname(), "ip": ray.util.get_node_ip_address(), "pid": os.getpid(),
                "device": self.device}

    def load(self, name, **options):
        """load_model, once per model and options on this worker."""
        from engine.models import load_model

        key = (str(name), tuple(sorted((k, str(v)) for k, v in options.items())))
        if key not in self.models:
            self.models[key] = load_model(name, **options)
        return self.models[key]

    def _job(self, job: RenderJob) -> RenderJob:
        return replace(job, device=job.device or self.device, progress=False)

    def _source(self, key: str, spec: tuple, fresh: bool = False):
        from live.cli.render import AudioFrames, TakeFrames

        if fresh or key not in self.sources:
            self.sources.pop(key, None)
            job, preset, audio = spec
            job = self._job(job)
            self.sources[key] = (TakeFrames(job, load=self.load) if job.take is not None
                                 else AudioFrames(job, preset=preset, audio=audio, load=self.load))
            self.used.discard(key)
        return self.sources[key]

    def open(self, key: str, spec: tuple) -> dict:
        """Load the model and the pipeline for a job; its manifest, for the frames folder."""
        return self._source(key, spec).manifest

    def frames(self, key: str, spec: tuple, indices: Sequence[int]):
        """Frames ``indices`` of a walk, in any order, as (index, (H, W, 3) uint8)."""
        import torch

        from engine.images import to_uint8

        source = self._source(key, spec)
        self.used.add(key)
        for i in indices:
            with torch.inference_mode():
                image = to_uint8(source.frame(i))
            yield i, image

    def feedback(self, key: str, spec: tuple, done: int, last: Optional[np.ndarray]):
        """Frames ``done`` .. the end of a chain, stream or take render, in order, after
        resuming from frame ``done - 1`` (``last``) as a local render resumes."""
        import torch

        from engine.images import from_uint8, to_uint8

        source = self._source(key, spec, fresh=key in self.used)
        self.used.add(key)
        with torch.inference_mode():
            if done:
                source.resume(done, from_uint8(last))
        for i in range(done, source.total):
            with torch.inference_mode():
                image = to_uint8(source.frame(i))
            yield i, image

    def cells(self, key: str, spec: tuple, cells: Sequence[tuple[int, list]]):
        """Sweep cells as (index, (H, W, 3) uint8), from a pipeline made once per sweep."""
        from live.cli.sweep import cell_image, sweep_pipeline

        if key not in self.sweeps:
            job, plan = spec
            self.sweeps[key] = sweep_pipeline(replace(job, device=job.device or self.device), plan)
        for index, bends in cells:
            yield index, np.asarray(cell_image(self.sweeps[key], bends))

    def release(self, key: str) -> None:
        self.sources.pop(key, None)
        self.sweeps.pop(key, None)


@dataclass
class Worker:
    """One actor as the driver sees it: its handle and where it runs (for messages)."""
    actor: object
    number: int
    where: dict = field(default_factory=dict)
    alive: bool = True

    @property
    def name(self) -> str:
        w = self.where
        return f"{self.number} on {w.get('host', '?')} ({w.get('ip', '?')}, pid {w.get('pid', '?')})"

    def recover(self) -> bool:
        """After a lost call: True when Ray has restarted the actor (it reloads on its next call)."""
        ray = require_ray()
        try:
            self.where = ray.get(self.actor.describe.remote(), timeout=START_TIMEOUT_S)
            return True
        except Exception:  # noqa: BLE001 - gone for good: restarts used up, or its node is lost
            self.alive = False
            return False


class Pool:
    """``count`` FrameWorker actors, started together and killed together."""

    def __init__(self, count: int, gpu: bool):
        ray = require_ray()
        remote = ray.remote(FrameWorker).options(num_gpus=1 if gpu else 0, num_cpus=1, max_restarts=RESTARTS,
                                                 max_task_retries=0)
        self.workers = [Worker(remote.remote("cuda" if gpu else "cpu"), n + 1) for n in range(count)]
        try:
            wheres = ray.get([w.actor.describe.remote() for w in self.workers], timeout=START_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            self.close()
            raise RenderError(f"{count} Ray workers did not start within {START_TIMEOUT_S:.0f} s: the cluster's "
                              f"{'GPUs' if gpu else 'CPUs'} are busy; pass a smaller --ray-workers") from None
        for w, where in zip(self.workers, wheres):
            w.where = where
        log.info("ray: %d workers: %s", count, ", ".join(w.name for w in self.workers))

    def alive(self) -> list[Worker]:
        return [w for w in self.workers if w.alive]

    def release(self, keys: Sequence[str]) -> None:
        """Drop jobs the workers no longer need (their models stay loaded)."""
        for w in self.alive():
            for key in keys:
                w.actor.release.remote(key)

    def close(self) -> None:
        ray = require_ray()
        for w in self.workers:
            try:
                ray.kill(w.actor)
            except Exception:  # noqa: BLE001 - already gone
                pass


_WARM: dict[tuple, Pool] = {}  # this process's pool, kept (models loaded) for its next call


def pool_for(cluster: Cluster, count: Optional[int], device: Optional[str] = None) -> Pool:
    """The workers for a call: ``count``, by default one per GPU, or per CPU on a cluster
    without GPUs (a worker loads a model only when it is given a job). A pool that a call in this process already started is reused,
    so a second render does not import torch and load the model again; the command line
    makes one call, and its workers end with it."""
    ray = require_ray()
    slots = cluster.slots()
    if count is not None and not 1 <= count <= max(slots, 1):
        kind = "GPU" if cluster.gpus else "CPU"
        raise RenderError(f"--ray-workers {count}: the cluster has {slots} {kind}s, one per worker; "
                          f"allowed: 1..{slots}")
    count = max(1, count or slots)
    gpu = cluster.gpus > 0 and not (device or "").startswith("cpu")
    key = (ray.get_runtime_context().get_job_id(), count, gpu)
    pool = _WARM.get(key)
    if pool is None or not pool.alive():
        release_workers()  # their CPUs or GPUs are the new pool's
        pool = _WARM[key] = Pool(count, gpu)
    return pool


def release_workers() -> None:
    """Kill the warm pool of this process (if any), freeing its CPUs or GPUs."""
    while _WARM:
        _WARM.popitem()[1].close()


def discard(pool: Pool) -> None:
    """After a failed call: its workers may still be busy with what it left."""
    for key, p in list(_WARM.items()):
        if p is pool:
            del _WARM[key]
    pool.close()


def worker_error(error: Exception, worker: Worker) -> RenderError:
    """An exception raised by netbend's code on a worker, as one line naming the worker."""
    cause = getattr(error, "cause", None) or error
    return RenderError(f"on Ray worker {worker.name}: {cause}")


class Work:
    """A queue of items for the workers, with what is still unfinished counted, so a
    worker that runs dry waits while another's items may still come back."""

    def __init__(self, items):
        self.items = deque(items)
        self.unfinished = len(self.items)
        self.error: Optional[BaseException] = None
        self.cond = threading.Condition()

    def get(self):
        with self.cond:
            while not self.items and self.unfinished and self.error is None:
                self.cond.wait()
            if self.error is not None or not self.items:
                return None
            return self.items.popleft()

    def finished(self) -> None:
        with self.cond:
            self.unfinished -= 1
            self.cond.notify_all()

    def give_back(self, item) -> None:
        with self.cond:
            self.items.appendleft(item)
            self.cond.notify_all()

    def fail(self, error: BaseException) -> None:
        with self.cond:
            if self.error is None:
                self.error = error
            self.cond.notify_all()


class Progress:
    """One bar over every frame (or cell) of the call: done, per second, ETA, workers."""

    def __init__(self, total: int, initial: int, workers: int, enabled: bool, unit: str = "frame"):
        from tqdm import tqdm

        self.lock = threading.Lock()
        self.bar = tqdm(total=total, initial=initial, unit=unit, desc="ray", disable=not enabled, smoothing=0.1)
        self.workers(workers)

    def update(self) -> None:
        with self.lock:
            self.bar.update(1)

    def workers(self, count: int) -> None:
        with self.lock:
            self.bar.set_postfix_str(f"workers={count}")

    def close(self) -> None:
        self.bar.close()


def run(pool: Pool, work: Work, progress: Progress) -> None:
    """Every item of ``work`` through the pool, one driver thread per worker; raises the
    first error (or when every worker is lost) after stopping the others."""
    threads = [threading.Thread(target=_drive, args=(w, pool, work, progress), name=f"ray-worker-{w.number}",
                                daemon=True) for w in pool.workers]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)  # a short join keeps ctrl-c working in the main thread
    except KeyboardInterrupt as e:
        work.fail(e)
        raise
    if work.error is not None:
        raise work.error


def _drive(worker: Worker, pool: Pool, work: Work, progress: Progress) -> None:
    ray = require_ray()
    lost = lost_errors()
    while (item := work.get()) is not None:
        try:
            for ref in item.start(worker):
                if work.error is not None:
                    return
                item.take(ray.get(ref), worker)
                progress.update()
            work.finished()
        except lost as e:
            log.warning("ray: worker %s lost (%s); its unfinished frames go back in the queue",
                        worker.name, type(e).__name__)
            rest = item.rest()
            if rest is None:
                work.finished()
            else:
                work.give_back(rest)
            if not worker.recover():
                progress.workers(len(pool.alive()))
                if not pool.alive():
                    work.fail(RenderError("every Ray worker was lost; the frames made so far are kept: run the "
                                          "same command again to resume"))
                return
        except ray.exceptions.RayTaskError as e:
            work.fail(worker_error(e, worker))
            return
        except BaseException as e:  # noqa: BLE001 - a failure here (a full disk) stops the others too
            work.fail(e)
            return
