"""Running a study's runs in parallel: N worker processes on this machine, or N jobs on a cluster through submitit.

Every worker runs the same loop over the study's runs on the same output directory; the directory's claims
(:mod:`experiments.runs`) give each run to one worker, so that the rows, artifacts and checkpoints are those of one
process, each run done once. This module only starts the workers, watches them and reports how they ended; it
schedules nothing itself.

- ``engine="local"``: ``workers`` processes of this machine (forked, so the task and its data are not copied again;
  ``spawn`` where fork is unsafe, which needs a picklable task). A worker killed by a signal (the OOM killer, a
  ``kill``) is replaced by a new one, at most ``respawn`` times in all; the new one takes over the dead worker's
  claim and resumes its run from its last LC checkpoint. A worker that fails (an exception) stops the others and
  the command fails with its error; Ctrl-C or SIGTERM stops every worker, which give up their claims.
- ``engine="submitit"``: ``workers`` jobs through `submitit <https://github.com/facebookincubator/submitit>`_
  (SLURM, or its local executor where there is no cluster: ``cluster="local"``). Jobs are checkpointable: a job
  preempted or timed out is requeued by submitit and resumes its run. The output directory and the reference cache
  must be on a file system every node sees; a claim of a node that died is taken over once its heartbeat has
  stopped for :data:`experiments.runs.STALE` seconds.

Why these engines: the runs of a sweep are independent, each minutes to hours long, and already claimed through
the shared directory, so the local case needs nothing beyond processes; for clusters submitit is the maintained,
small library that submits Python callables to SLURM with requeueing and has a local executor that tests it here.
Ray or Dask would also run the callables, but would add a scheduler of their own for a job that needs none.
"""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import multiprocessing.connection
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import lc

from .cli import option

__all__ = ["Parallel", "ENGINES", "run_workers", "run_job"]

log = logging.getLogger(__name__)

ENGINES = ("local", "submitit")


@dataclass
class Parallel:
    """Where a study's runs are done (fields of the sweep's config: flags and config-file keys)."""

    workers: int = option(1, "processes (or cluster jobs) doing the runs at once, sharing --out: each run is "
                             "claimed by one of them (1: this process alone)")
    engine: str = option("local", "where the workers run: local (processes of this machine) or submitit (jobs "
                                  "on a SLURM cluster, or submitit's local executor: --cluster local)",
                         choices=ENGINES)
    cluster: str = option("", "submitit's cluster: slurm, local or debug (default: slurm where sbatch is found, "
                              "else local)")
    executor: dict[str, str] = option({}, "submitit's executor parameters: --executor timeout_min=120 "
                                          "slurm_partition=gpu gpus_per_node=1 (numbers read as numbers)")
    respawn: int = option(3, "local workers killed by a signal are replaced, at most this many times in all")

    def check_parallel(self) -> None:
        """Bad settings, as a :class:`lc.CompressionError`, before anything runs."""
        if self.workers < 1:
            raise lc.CompressionError(f"workers={self.workers}: give at least 1")
        if self.respawn < 0:
            raise lc.CompressionError(f"respawn={self.respawn}: give 0 or more")
        if self.engine not in ENGINES:
            raise lc.CompressionError(f"engine={self.engine!r}: choose one of {', '.join(ENGINES)}")
        if self.engine != "submitit" and (self.cluster or self.executor):
            raise lc.CompressionError("cluster and executor are settings of engine=submitit; give --engine "
                                      "submitit, or leave them out")
        if self.engine == "submitit":
            _submitit()
            if self.cluster not in ("", "slurm", "local", "debug"):
                raise lc.CompressionError(f"cluster={self.cluster!r}: choose slurm, local or debug")


def _submitit():
    try:
        import submitit
    except ImportError:
        raise lc.CompressionError("engine=submitit needs the submitit package: pip install 'lc[cluster]' (or "
                                  "pip install submitit)") from None
    return submitit


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _executor(config: Parallel, folder: Path, name: str):
    submitit = _submitit()
    executor = submitit.AutoExecutor(folder=folder, cluster=config.cluster or None)
    try:
        executor.update_parameters(name=name, **{k: _value(v) for k, v in config.executor.items()})
    except (ValueError, TypeError, NameError) as e:
        raise lc.CompressionError(f"executor parameters {config.executor}: {e}") from None
    return executor


def run_job(work: Callable[[], object], config: Parallel, folder: Path, name: str = "lc-prepare") -> None:
    """Run ``work()`` once where the workers will run: here (local), or as one job through submitit (the
    reference's training, say, so that the workers only load it)."""
    if config.engine == "local":
        work()
        return
    job = _executor(config, folder, name).submit(work)
    log.info("submitted %s as job %s (logs in %s)", name, job.job_id, folder)
    _result(job, name)


def run_workers(work: Callable[[int], object], config: Parallel, folder: Path, *,
                progress: Callable[[], None] | None = None, name: str = "lc-worker") -> None:
    """Call ``work(i)`` in each of ``config.workers`` workers and wait for all of them; ``progress()`` is called
    about once a second meanwhile (from this process). Raises :class:`lc.CompressionError` if a worker failed (the
    runs finished by then are kept: the same command resumes)."""
    if config.engine == "local":
        _local(work, config, progress)
    else:
        _cluster(work, config, folder, progress, name)


# ---------------------------------------------------------------------------------------------- local processes
def _context():
    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods and sys.platform != "darwin" else "spawn")


def _child(work: Callable[[int], object], i: int) -> None:
    # SIGTERM (the parent stopping the workers) unwinds like Ctrl-C: the run in progress gives up its claim
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter(f"[worker {i}] %(message)s"))
    work(i)


def _local(work, config: Parallel, progress) -> None:
    ctx = _context()

    def start(i: int):
        p = ctx.Process(target=_child, args=(work, i), name=f"lc-worker-{i}", daemon=False)
        p.start()
        return p

    procs = {i: start(i) for i in range(config.workers)}
    respawned = 0
    # SIGTERM to this process (a `kill`, a scheduler's timeout) stops the workers too, as Ctrl-C does
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        while procs:
            multiprocessing.connection.wait([p.sentinel for p in procs.values()], timeout=1.0)
            if progress is not None:
                progress()
            for i, p in list(procs.items()):
                if p.exitcode is None:
                    continue
                p.join()
                del procs[i]
                code = p.exitcode
                if code == 0:
                    continue
                if code < 0 and -code != signal.SIGINT and respawned < config.respawn:
                    respawned += 1
                    log.warning("worker %d was killed (%s); starting another in its place, which takes over its "
                                "run (%d of %d replacements)", i, signal.Signals(-code).name, respawned,
                                config.respawn)
                    procs[i] = start(i)
                    continue
                why = (f"was killed ({signal.Signals(-code).name})" if code < 0
                       else f"failed with exit status {code} (its error is printed above)")
                raise lc.CompressionError(f"worker {i} {why}; the runs finished so far are kept: the same command "
                                          "resumes the rest")
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop(procs.values())


def _stop(procs) -> None:
    """Stop the workers still running (they give up their claims) and wait for them."""
    procs = list(procs)
    for p in procs:
        if p.exitcode is None:
            p.terminate()
    for p in procs:
        p.join(timeout=30)
        if p.exitcode is None:
            p.kill()
            p.join()


# ---------------------------------------------------------------------------------------------- submitit
class _Job:
    """A worker as a submitit job; checkpointable, so that a preempted or timed-out job is requeued (its run then
    resumes from its LC checkpoint)."""

    def __init__(self, work: Callable[[int], object], i: int):
        self.work, self.i = work, i

    def __call__(self):
        return self.work(self.i)

    def checkpoint(self, *args, **kwargs):
        submitit = _submitit()
        return submitit.helpers.DelayedSubmission(_Job(self.work, self.i))


def _cluster(work, config: Parallel, folder: Path, progress, name: str) -> None:
    executor = _executor(config, folder, name)
    jobs = [executor.submit(_Job(work, i)) for i in range(config.workers)]
    log.info("submitted %d jobs (%s; logs in %s)", len(jobs), ", ".join(str(j.job_id) for j in jobs), folder)
    try:
        while not all(j.done() for j in jobs):
            if progress is not None:
                progress()
            time.sleep(1.0)
    except KeyboardInterrupt:
        for j in jobs:
            j.cancel(check=False)
        raise
    for i, j in enumerate(jobs):
        _result(j, f"worker {i}")


def _result(job, what: str):
    try:
        return job.result()
    except Exception as e:                      # submitit's FailedJobError / UncompletedJobError
        raise lc.CompressionError(f"{what} (job {job.job_id}) failed: {str(e).strip()[-2000:]}\nthe runs finished "
                                  "so far are kept: the same command resumes the rest") from None
