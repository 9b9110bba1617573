"""The Ray executor (``--executor ray``): one Ray task per cell, with the resources it declares.

``--ray-address`` is ``auto`` (the cluster this machine joined with ``ray start``) or the head's
``HOST:PORT``. Each task reserves ``--ray-cpus-per-cell`` CPUs and ``--ray-gpus-per-cell`` GPUs
(fractions allowed: ``0.25`` lets four small cells share a GPU). A task whose node is lost is retried
by Ray (``max_retries``) and resumes from the cell's checkpoint; a task that fails for good fails its
cell (``RayTaskFailed``, ``--retry-failed`` runs it again). The record's ``ran_on`` says ``ray``, the
node's host and the Ray task id.

**Where results are written.** With a shared work directory (the default) the task writes the cell
into it under the cell's lease (:mod:`crlbench.suites.cell_task`), as a Slurm task does; a retried task
that finds its lost attempt's lease still live (that node's worker may still run) skips the cell, and
the launcher waits for that lease to end. With ``shared_workdir=False`` (``--ray-no-shared-workdir``)
the launcher holds each cell's lease, as the local executor does; the task gets the cell's folder
(its checkpoint) as an archive, runs the cell in a temporary folder on its node (datasets cached in
``<tmp>/crlbench-ray-data`` there) and returns the folder, which the launcher writes into the work
directory.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from crlbench.core.errors import ConfigError
from crlbench.suites.cell import Cell
from crlbench.suites.executor_contract import ResultHook, failed_record, require, skipped, written_since
from crlbench.suites.provenance import placement
from crlbench.suites.results import RESULT, cell_dir, read_result

log = logging.getLogger(__name__)

POLL_S = 1.0
MAX_RETRIES = 3
NOT_SHIPPED = ("lease.json", "slurm.json", "mlflow.json")  # the launcher's bookkeeping, not the cell's
NODE_DATA = "crlbench-ray-data"  # under a node's temporary folder: datasets of tasks without a shared work directory


@dataclass(frozen=True)
class RayOptions:
    """The ``--ray-*`` flags."""

    address: str = "auto"
    cpus_per_cell: float = 1.0
    gpus_per_cell: float = 0.0
    shared_workdir: bool = True
    max_retries: int = MAX_RETRIES
    poll_s: float = POLL_S

    def __post_init__(self) -> None:
        if not (self.address == "auto" or re.fullmatch(r"(ray://)?[\w.\-\[\]:]+:\d+", self.address)):
            raise ConfigError(f"--ray-address: {self.address!r} is not a Ray cluster address; use auto or HOST:PORT "
                              "of the head node (e.g. 10.0.0.5:6379)")
        if not self.cpus_per_cell > 0:
            raise ConfigError(f"--ray-cpus-per-cell must be a number > 0; got {self.cpus_per_cell!r}")
        if not self.gpus_per_cell >= 0:
            raise ConfigError(f"--ray-gpus-per-cell must be a number >= 0 (a fraction shares a GPU); got "
                              f"{self.gpus_per_cell!r}")


class RayExecutor:
    """Cells as Ray tasks on the cluster at ``options.address``; connects when created (an unreachable
    cluster fails before any work)."""

    name = "ray"
    one_at_a_time = False
    detach = False

    def __init__(self, options: RayOptions) -> None:
        require("ray")
        self.options = options
        self.leases_in_tasks = options.shared_workdir
        self._connect()

    def _connect(self) -> None:
        import ray

        if ray.is_initialized():
            return
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            ray.init(address=self.options.address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
            raise ConfigError(f"--ray-address {self.options.address}: cannot connect to a Ray cluster: {first}") from error

    def run(self, cells: Sequence[Cell], workdir: Path, *, on_result: ResultHook, progress: bool = True,
            fences: Mapping[str, Any] | None = None) -> None:
        """``fences`` (the launcher's tokens) guard the write-back of ``--ray-no-shared-workdir``; with a shared
        work directory the tasks take their own leases and tokens."""
        import ray
        from tqdm.auto import tqdm

        self._connect()
        workdir = Path(workdir).resolve()
        from crlbench.training.budget import KEEP_CHECKPOINTS

        env = {KEEP_CHECKPOINTS: os.environ[KEEP_CHECKPOINTS]} if os.environ.get(KEEP_CHECKPOINTS) else {}
        task = ray.remote(run_ray_cell).options(num_cpus=self.options.cpus_per_cell,
                                                num_gpus=self.options.gpus_per_cell,
                                                max_retries=self.options.max_retries, retry_exceptions=False,
                                                runtime_env={"env_vars": env} if env else None)
        since = time.time()
        shared = self.options.shared_workdir
        refs = {task.remote(cell, str(workdir), since, shared, None if shared else pack(cell_dir(workdir, cell.hash))):
                cell for cell in cells}
        bar = tqdm(total=len(refs), desc="cells (Ray)", unit="cell", disable=None if progress else True)
        try:
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=self.options.poll_s)
                for ref in ready:
                    cell = refs.pop(ref)
                    on_result(self._outcome(ref, cell, workdir, since, (fences or {}).get(cell.hash)))
                    bar.update(1)
        finally:
            bar.close()
            for ref in refs:  # interrupted: nothing is left running for a launcher that is gone
                ray.cancel(ref, force=True)

    def _outcome(self, ref: Any, cell: Cell, workdir: Path, since: float, fence: Any = None) -> dict[str, Any]:
        import ray

        from crlbench.core.errors import FencedOut

        try:
            result = ray.get(ref)
        except Exception as error:  # noqa: BLE001 - RayTaskError, WorkerCrashedError, ...: the cell failed
            record = written_since(cell, workdir, since) if self.options.shared_workdir else None
            if record is not None:
                return record
            first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
            log.warning("cell %s failed: its Ray task failed: %s: %s", cell.title, type(error).__name__, first)
            return failed_record(cell, workdir, "RayTaskFailed",
                                 f"the Ray task of this cell failed (an error in the task, or its node or worker lost "
                                 f"{self.options.max_retries + 1} times): {type(error).__name__}: {first}. "
                                 f"Run again with --retry-failed to run it again",
                                 {"executor": "ray", "host": None, "task_id": ref.task_id().hex()})
        if self.options.shared_workdir:
            return result
        try:  # the write-back, under the launcher's lease token (crlbench.core.fencing)
            with fence.holding() if fence is not None else contextlib.nullcontext():
                unpack(result["files"], cell_dir(workdir, cell.hash))
        except FencedOut as error:
            log.warning("cell %s: its task's files were not written back: %s", cell.title, error)
            return skipped(cell.hash, f"the holder of lease token {error.newest}")
        return read_result(cell_dir(workdir, cell.hash)) or result["record"]


def run_ray_cell(cell: Cell, workdir: str, since: float, shared: bool, archive: bytes | None) -> dict[str, Any]:
    """A Ray task: the cell under its lease in the shared work directory, or (``shared`` False) in a
    temporary folder of this node, from ``archive`` (its folder so far), returning its files."""
    import ray

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    task_id = ray.get_runtime_context().get_task_id()
    ran_on = placement("ray", task_id, node_id=ray.get_runtime_context().get_node_id())
    if shared:
        from crlbench.suites.cell_task import run_leased_cell

        return run_leased_cell(cell, workdir, ran_on=ran_on, invocation=f"ray-{task_id}", since=since)
    from crlbench.suites.runner import run_cell

    local = Path(tempfile.mkdtemp(prefix="crlbench-ray-"))
    try:
        data = Path(tempfile.gettempdir()) / NODE_DATA
        data.mkdir(exist_ok=True)
        (local / "data").symlink_to(data, target_is_directory=True)
        folder = cell_dir(local, cell.hash)
        unpack(archive, folder)
        record = run_cell(cell, local, ran_on=ran_on)
        return {"record": record, "files": pack(folder)}
    finally:
        shutil.rmtree(local, ignore_errors=True)


def pack(folder: Path) -> bytes | None:
    """A cell folder as gzipped tar bytes (None when it does not exist), without the launcher's bookkeeping."""
    if not folder.is_dir():
        return None
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.name not in NOT_SHIPPED and not path.name.startswith("."):
                archive.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    return buffer.getvalue()


def unpack(data: bytes | None, folder: Path) -> None:
    """Write what :func:`pack` made into ``folder``; the record last, so a half-written folder is no result."""
    folder.mkdir(parents=True, exist_ok=True)
    if data is None:
        return
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        members = archive.getmembers()
        files = [m for m in members if m.name != RESULT]
        if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: refuse links and paths outside folder
            archive.extractall(folder, members=files, filter="data")
        else:  # older Pythons lack extraction filters; the archive is the cell folder a task of ours packed
            archive.extractall(folder, members=files)
        record = [m for m in members if m.name == RESULT]
        if record:
            from crlbench.core.files import atomic_write

            content = archive.extractfile(record[0]).read()
            atomic_write(folder / RESULT, lambda handle: handle.write(content))
