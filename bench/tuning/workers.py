"""Trials run in this process and ``workers - 1`` spawned ones (:func:`run_workers`), sharing the trials this
invocation is to run exactly (tickets in shared memory), each worker taking the next trial when it is free.

A spawned worker dies with its launcher whatever kills it (as suite workers do:
:func:`crlbench.suites.executor.die_with_parent`), computes outside its cells on its share of the cores, and
runs its cells on GPU ``worker mod GPUs`` (its worker slot, :mod:`crlbench.suites.cell_resources`). Trial ``n``
draws with a sampler seeded from ``(sampler seed, n)`` wherever it runs. Datasets are cached in
``<workdir>/data``, shared with suites and other studies (:func:`share_data_cache`).
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from crlbench.core import registry
from crlbench.core.errors import CrlbenchError
from crlbench.suites.cell_resources import WORKER_SLOT
from crlbench.suites.executor import die_with_parent, limit_threads, threads_per_worker
from crlbench.tuning.objective import TrialFailed, TrialObjective
from crlbench.tuning.study import StudySettings, counted_trials, open_storage
from crlbench.tuning.tune_config import TuneConfig, build_pruner, build_trial_sampler

POLL_S = 1.0  # how often the invoking process looks for trials to log while workers run


def _optimize(config: TuneConfig, settings: StudySettings, tickets: Any, worker: int,
              callbacks: Sequence[Callable] = (), on_stale: Callable[[int], None] | None = None) -> None:
    """Run trials in this process while ``tickets`` (a shared ``multiprocessing.Value``) has some and
    the study has fewer than ``n_trials`` trials (workers of other invocations count too)."""
    import optuna

    registry.load_plugins(config.plugins)
    storage = open_storage(settings.storage, heartbeat_interval=settings.heartbeat_interval,
                           grace_period=settings.grace_period, max_retry=config.trials.max_retry, on_stale=on_stale)
    # Trial n draws with a sampler seeded from (sampler seed, n): distinct for every trial of the study
    # wherever and whenever it runs, and the same for trial n whichever worker or launch runs it.
    study = optuna.load_study(study_name=settings.study_name, storage=storage,
                              sampler=build_trial_sampler(config.sampler, config.sampler.seed),
                              pruner=build_pruner(config.pruner))
    objective = TrialObjective(config, settings.study_name, settings.cells_root, settings.invocation)
    deadline = None if config.trials.timeout_s is None else time.monotonic() + config.trials.timeout_s
    while ((deadline is None or time.monotonic() < deadline) and counted_trials(study) < settings.n_trials
           and _take_ticket(tickets)):
        study.optimize(objective, n_trials=1, catch=(TrialFailed,), callbacks=callbacks)


def _take_ticket(tickets: Any) -> bool:
    """Claim one of the trials left to this invocation: an exact budget however fast each worker is."""
    with tickets.get_lock():
        if tickets.value <= 0:
            return False
        tickets.value -= 1
        return True


def run_workers(config: TuneConfig, settings: StudySettings, workers: int, trials: int,
                on_trial: Callable[..., None], on_stale: Callable[[int], None]) -> None:
    """Run ``trials`` trials in this process and ``workers - 1`` spawned ones, each taking the next
    trial when it is free.

    ``on_trial`` runs after each trial of this process and, once this process is done, every
    ``POLL_S`` seconds until the other workers are (MLflow logging: this process is the only writer).
    Every process gets ``cores // workers`` torch threads outside its cells (which compute on their own
    ``threads``); this one's are restored afterwards.
    """
    import optuna
    import torch

    context = multiprocessing.get_context("spawn")
    tickets = context.Value("i", trials)
    if workers == 1:
        _optimize(config, settings, tickets, 0, callbacks=[on_trial], on_stale=on_stale)
        return
    threads = threads_per_worker(workers)
    pool = futures.ProcessPoolExecutor(workers - 1, mp_context=context, initializer=_start_worker,
                                       initargs=(threads, tickets, os.getpid()))
    finished = False
    try:
        pending = {pool.submit(_worker, config, settings, index, optuna.logging.get_verbosity())
                   for index in range(1, workers)}
        own_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            _optimize(config, settings, tickets, 0, callbacks=[on_trial], on_stale=on_stale)
        finally:
            torch.set_num_threads(own_threads)
        while pending:
            done, pending = futures.wait(pending, timeout=POLL_S, return_when=futures.FIRST_COMPLETED)
            on_trial()
            for future in done:
                _worker_result(future, settings)
        finished = True
    finally:
        if not finished:  # the other workers finish the trials they are running and start no more
            with tickets.get_lock():
                tickets.value = 0
        # Every worker has returned when all went well; their interpreters then take a second or two
        # to exit (torch's teardown), which need not hold up this process.
        pool.shutdown(wait=not finished, cancel_futures=True)


def _worker_result(future: futures.Future, settings: StudySettings) -> None:
    """Raise what a spawned worker raised; a dead worker as a :class:`CrlbenchError` saying how to resume."""
    try:
        future.result()
    except BrokenProcessPool:
        raise CrlbenchError(
            f"study {settings.study_name}: a worker process ended abruptly (killed, or out of memory); run the "
            f"same command again to resume: the trial it was running is marked FAIL once "
            f"{settings.grace_period or 2 * settings.heartbeat_interval} s have passed") from None


_worker_tickets: Any = None  # a spawned worker's handle on the invocation's tickets


def _start_worker(threads: int, tickets: Any, parent_pid: int) -> None:
    """A spawned worker's initializer: it dies with the launcher ``parent_pid`` whatever kills it (as suite
    workers do: crlbench.suites.executor.die_with_parent), its share of the cores, and the tickets (shared
    memory, which can only be handed over when the process starts)."""
    die_with_parent(parent_pid)
    global _worker_tickets
    limit_threads(threads)
    _worker_tickets = tickets


def _worker(config: TuneConfig, settings: StudySettings, worker: int, verbosity: int) -> None:
    """A spawned worker: trials until the tickets run out; its cells use GPU ``worker mod GPUs`` (the
    launcher's own trials, worker 0, torch's current GPU: crlbench.suites.runner.resolve_device)."""
    import optuna

    os.environ[WORKER_SLOT] = str(worker)

    optuna.logging.set_verbosity(verbosity)
    _optimize(config, settings, _worker_tickets, worker)


def share_data_cache(settings: StudySettings) -> None:
    """Point the study's data cache at ``<workdir>/data``, where suites keep theirs, so that every
    study does not generate the datasets again (where symbolic links cannot be made, it keeps its own)."""
    shared, own = settings.workdir / "data", settings.cells_root / "data"
    if own.exists() or own.is_symlink():
        return
    settings.cells_root.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        shared.mkdir(parents=True, exist_ok=True)
        own.symlink_to(shared, target_is_directory=True)
