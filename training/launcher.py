"""The driver side of `lavie train`: pre-flight checks, the Ray Train job, progress, export.

:func:`preflight` runs before Ray is touched: config (already validated on load), every manifest
(``training.data.validate_sources``: missing, wrong kind, no rows, all-zero weights), the model
folders (structure, configs, every weight's shape, compatibility: the model spec's ``check``) and
the run's state in storage (a new run must not exist; ``--resume`` needs one, trained with a
compatible config). Every problem is a one-line :class:`UserError`, so a bad input never starts a
worker, nor a cluster.

:func:`train` then runs a ``TorchTrainer`` (Ray Train V2): ``ScalingConfig`` from the config,
``RunConfig(name, storage_path)`` (a local folder or a bucket URL), ``FailureConfig(max_failures)``
so that a failed worker restarts the worker group from the latest checkpoint, and
``CheckpointConfig(num_to_keep)``. Ray restores a run whose name already exists in storage from
its latest checkpoint: that is what ``--resume`` does. A controller callback forwards each report
to the driver, which prints a progress line. Finally the last checkpoint is consolidated and
exported (in a Ray task, so DeepSpeed is never imported by the driver).

The job runs on a Ray connection made by its caller: ``connect`` is called once the pre-flight
has passed (the `lavie` command joins or starts the cluster there); without it, Ray must already
be connected. Credentials in the config's storage options reach the workers sealed
(:func:`training.config.seal`): Ray's train state and dashboard never show them.

On several nodes the storage path must be shared by all of them (a bucket URL or a shared
filesystem), as must the manifests, the media and the model folders.
"""

from __future__ import annotations

import json
import os
import posixpath
import queue as queue_module
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lavie.core.errors import UserError, message_line, require_ray
from lavie.core.storage import SealedOptions, arrow_filesystem, filesystem, is_local, join, local_path
from training.callbacks import TrainerCallback
from training.checkpointing import CHECKPOINT_PREFIX, TRAINER_STATE
from training.config import TrainConfig, seal
from training.metrics import format_progress
from training.specs import spec_class

Connect = Callable[[], None]

SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"


@dataclass
class RunState:
    """What storage holds for a run name."""

    exists: bool
    checkpoint: str | None = None  # URI of the latest registered checkpoint
    step: int = 0
    trainer_state: dict[str, Any] | None = None
    #: Ray's snapshot could not be read (the run was stopped while Ray rewrote it, which leaves it
    #: empty); ``checkpoint`` is then the newest complete checkpoint folder found in storage.
    damaged_snapshot: str | None = None


@dataclass
class TrainResult:
    run_uri: str
    step: int
    checkpoint: str | None
    metrics: dict[str, Any]
    export: dict[str, Any] | None
    export_uri: str | None


# --------------------------------------------------------------------------- pre-flight
def run_state(config: TrainConfig) -> RunState:
    """Inspect the run folder in storage via Ray's checkpoint-manager snapshot.

    Ray rewrites the snapshot in place after every checkpoint; a run stopped at that moment (`lavie
    jobs stop`, a killed head) leaves it empty, and Ray then refuses to restore the run. Such a
    run resumes from the newest checkpoint folder that every rank finished writing."""
    run_uri = config.run_uri()
    try:
        fs, path = filesystem(run_uri, config.run.storage_options)
        snapshot = f"{path}/{SNAPSHOT_FILE}"
        if not fs.exists(snapshot):
            return RunState(exists=fs.exists(path) and bool(fs.ls(path)))
        with fs.open(snapshot, "r") as f:
            text = f.read()
        try:
            latest = (json.loads(text).get("latest_checkpoint_result") or {}).get("checkpoint_dir_name")
        except ValueError:
            return _state_from_folders(fs, path, run_uri, config.scaling.num_workers, snapshot)
        if not latest:
            return RunState(exists=True)
        with fs.open(f"{path}/{latest}/{TRAINER_STATE}", "r") as f:
            state = json.load(f)
    except (OSError, ValueError) as exc:
        raise UserError(f"run.storage_path: cannot read {run_uri} ({message_line(exc)})") from None
    return RunState(exists=True, checkpoint=f"{run_uri}/{latest}", step=int(state["step"]), trainer_state=state)


def _state_from_folders(fs: Any, path: str, run_uri: str, world_size: int, snapshot: str) -> RunState:
    """The newest checkpoint folder holding the trainer state and every rank's data state (the
    files each rank writes last)."""
    names = (posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False))
    for name in sorted((n for n in names if n.startswith(CHECKPOINT_PREFIX)), reverse=True):
        folder = f"{path}/{name}"
        ranks = [f"{folder}/data/rank_{rank:05d}.json" for rank in range(world_size)]
        if fs.exists(f"{folder}/{TRAINER_STATE}") and all(fs.exists(rank) for rank in ranks):
            with fs.open(f"{folder}/{TRAINER_STATE}", "r") as f:
                state = json.load(f)
            return RunState(True, f"{run_uri}/{name}", int(state["step"]), state, damaged_snapshot=snapshot)
    return RunState(exists=True, damaged_snapshot=snapshot)


def preflight(config: TrainConfig, *, resume: bool) -> RunState:
    """Every check that can fail on user input, before any worker starts."""
    from training.data import validate_sources

    spec = spec_class(config.model.kind)(config)
    validate_sources(spec.data_config())
    spec.check()
    state = run_state(config)
    if resume:
        if not state.exists or state.checkpoint is None:
            raise UserError(f"--resume: run '{config.run.name}' has no checkpoint in {config.run.storage_path}")
        saved = state.trainer_state or {}
        if saved.get("config_digest") != config.digest():
            raise UserError(
                f"--resume: the config of run '{config.run.name}' changed in what a resume must keep "
                "(model, data, batch, world size, ZeRO stage, trainable, seed)"
            )
    elif state.exists:
        raise UserError(
            f"run '{config.run.name}' already exists in {config.run.storage_path}; pass --resume to "
            "continue it, or choose another run.name"
        )
    return state


# --------------------------------------------------------------------------- progress
class _ProgressCallback:
    """Ray Train controller callback: forwards rank 0's reported metrics to the driver's queue."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        if metrics:
            try:
                self.queue.put_nowait(dict(metrics[0]))
            except Exception:  # a full or gone queue must never fail training
                pass

    def after_exception(self, run_context: Any, worker_exceptions: dict[int, Exception]) -> None:
        try:
            ranks = ", ".join(str(r) for r in sorted(worker_exceptions))
            self.queue.put_nowait({"event": f"worker failure on rank {ranks}; restarting from the last checkpoint if allowed"})
        except Exception:
            pass


def _make_callback(queue: Any) -> Any:
    from ray.train.v2.api.callback import UserCallback

    class ProgressCallback(_ProgressCallback, UserCallback):
        pass

    return ProgressCallback(queue)


class _ProgressPrinter(threading.Thread):
    def __init__(self, queue: Any, max_steps: int, stream: Any, quiet: bool) -> None:
        super().__init__(daemon=True)
        self.queue, self.max_steps, self.stream, self.quiet = queue, max_steps, stream, quiet
        self.stop = threading.Event()
        self.last: dict[str, Any] = {}
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                item = self.queue.get(timeout=0.5)
            except (queue_module.Empty, Exception):
                continue
            self._show(item)

    def drain(self) -> None:
        self.stop.set()
        self.join(timeout=5)
        while True:
            try:
                self._show(self.queue.get_nowait())
            except Exception:
                break
        if self.tty and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()

    def _show(self, item: Mapping[str, Any]) -> None:
        if "event" in item:
            if not self.quiet:
                self.stream.write(("\n" if self.tty else "") + f"[train] {item['event']}\n")
            return
        self.last = dict(item)
        if self.quiet:
            return
        line = "[train] " + format_progress(item, self.max_steps)
        self.stream.write(f"\r{line}\033[K" if self.tty else line + "\n")
        self.stream.flush()


# --------------------------------------------------------------------------- the job
def train(
    config: TrainConfig,
    *,
    connect: Connect | None = None,
    resume: bool = False,
    quiet: bool = False,
    stream: Any = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> TrainResult:
    """Pre-flight, train on Ray, export. Raises :class:`UserError` for bad input.

    ``callbacks`` (:class:`training.callbacks.TrainerCallback`) run on every worker."""
    stream = stream or sys.stdout
    connect = connect or (lambda: require_ray("training"))
    state = preflight(config, resume=resume)
    if resume and state.step >= config.run.max_steps:
        if not quiet:
            print(f"[train] run '{config.run.name}' is already at step {state.step} (max_steps {config.run.max_steps})", file=stream)
        export = export_run(config, state.checkpoint, connect=connect, stream=stream, quiet=quiet) if config.run.export else None
        return TrainResult(config.run_uri(), state.step, state.checkpoint, {}, export, config.export_uri() if export else None)

    connect()
    resume_from = None
    if resume and state.damaged_snapshot is not None:
        # Ray would refuse the empty snapshot: set it aside and hand the workers the checkpoint.
        fs, _ = filesystem(config.run_uri(), config.run.storage_options)
        fs.mv(state.damaged_snapshot, f"{state.damaged_snapshot}.damaged-{int(time.time())}")
        resume_from = state.checkpoint
        if not quiet:
            print(f"[train] {SNAPSHOT_FILE} was empty (the run was stopped while Ray rewrote it); resuming from "
                  f"{state.checkpoint}", file=stream, flush=True)  # fmt: skip
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.util.queue import Queue

    # Ray Train V2 workers hold one unconsumed report each and the controller takes them when it
    # polls the workers (every 2 s by default): more frequent reports would block the training
    # loop. Poll faster (this also notices dead workers sooner). Propagated to the controller.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    progress_queue = Queue(maxsize=1000, actor_options={"num_cpus": 0})
    printer = _ProgressPrinter(progress_queue, config.run.max_steps, stream, quiet)
    scaling = ScalingConfig(
        num_workers=config.scaling.num_workers,
        use_gpu=config.scaling.use_gpu,
        resources_per_worker=config.scaling.resources_per_worker,
        placement_strategy=config.scaling.placement_strategy,
    )
    storage_path, storage_filesystem = config.run.storage_path, None
    if not is_local(storage_path):
        storage_filesystem, storage_path = arrow_filesystem(storage_path, config.run.storage_options)
    run_config = RunConfig(
        name=config.run.name,
        storage_path=storage_path,
        storage_filesystem=storage_filesystem,
        failure_config=FailureConfig(max_failures=config.run.max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=config.run.keep_checkpoints),
        callbacks=[_make_callback(progress_queue)],
        logging_config=LoggingConfig(log_level="WARNING"),
    )
    from training.worker import train_loop_per_worker

    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={**seal(config), "callbacks": list(callbacks), "resume_from": resume_from},
        torch_config=TorchConfig(backend="nccl" if config.scaling.use_gpu else "gloo"),
        scaling_config=scaling,
        run_config=run_config,
    )
    if not quiet:
        where = f"resuming at step {state.step}" if resume else "new run"
        print(
            f"[train] {config.run.name}: {config.model.kind} model, {where}, {config.scaling.num_workers} workers, "
            f"ZeRO-{config.deepspeed.zero_stage}, global batch {config.global_batch_size}, {config.run.max_steps} "
            f"steps → {config.run_uri()}",
            file=stream,
            flush=True,
        )
    printer.start()
    try:
        result = trainer.fit()
    except Exception as exc:
        raise RuntimeError(f"training failed: {message_line(exc)}") from exc
    finally:
        printer.drain()
        try:
            import ray

            ray.kill(progress_queue.actor)
        except Exception:
            pass
    checkpoint_uri = _checkpoint_uri(config, result.checkpoint)
    metrics = dict(result.metrics or printer.last)
    step = int(metrics.get("step", state.step))
    export = export_run(config, checkpoint_uri, stream=stream, quiet=quiet) if config.run.export and checkpoint_uri else None
    return TrainResult(config.run_uri(), step, checkpoint_uri, metrics, export, config.export_uri() if export else None)


def _checkpoint_uri(config: TrainConfig, checkpoint: Any) -> str | None:
    if checkpoint is None:
        return None
    return join(config.run_uri(), Path(checkpoint.path).name)


# --------------------------------------------------------------------------- export
def _export_task(checkpoint_uri: str, out_uri: str, storage: SealedOptions) -> dict[str, Any]:
    """Runs in a Ray task: download (if remote), consolidate, export. DeepSpeed's consolidation
    prints its progress; it is kept and only shown if the export fails."""
    import contextlib
    import io
    import tempfile

    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from training.trainer import Trainer

    options = storage.open()
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            if is_local(checkpoint_uri):
                return Trainer.export(local_path(checkpoint_uri), out_uri, options)
            fs, path = filesystem(checkpoint_uri, options)
            with tempfile.TemporaryDirectory(prefix="lavie-ckpt-") as local:
                fs.get(path.rstrip("/") + "/", local, recursive=True)
                return Trainer.export(local, out_uri, options)
    except Exception:
        sys.stderr.write(chatter.getvalue())
        raise


def export_run(
    config: TrainConfig,
    checkpoint_uri: str | None = None,
    *,
    connect: Connect | None = None,
    stream: Any = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Consolidate a checkpoint of the run (default: the latest) and export it to
    ``run.export_path`` (default ``<run>/export``), in a Ray task."""
    stream = stream or sys.stdout
    if checkpoint_uri is None:
        state = run_state(config)
        if state.checkpoint is None:
            raise UserError(f"export: run '{config.run.name}' has no checkpoint in {config.run.storage_path}")
        checkpoint_uri = state.checkpoint
    else:
        try:
            fs, path = filesystem(checkpoint_uri, config.run.storage_options)
            complete = fs.exists(f"{path.rstrip('/')}/{TRAINER_STATE}")
        except (OSError, ValueError) as exc:
            raise UserError(f"--checkpoint {checkpoint_uri}: cannot read ({message_line(exc)})") from None
        if not complete:
            raise UserError(f"--checkpoint {checkpoint_uri}: not a training checkpoint (no {TRAINER_STATE})")
    (connect or (lambda: require_ray("export")))()
    import ray

    started = time.perf_counter()
    task = ray.remote(num_cpus=1)(_export_task)
    storage = SealedOptions.seal(config.run.storage_options)
    info = ray.get(task.remote(checkpoint_uri, config.export_uri(), storage))
    if not quiet:
        probe = info.get("probe_max_abs_diff")
        check = f", exported model vs engine on the probe: max |diff| {probe:.2e}" if probe is not None else ""
        print(
            f"[train] exported step {info['step']} → {config.export_uri()} (raw/, ema/) "
            f"in {time.perf_counter() - started:.1f}s{check}",
            file=stream,
            flush=True,
        )
    return info


__all__ = ["RunState", "TrainResult", "export_run", "preflight", "run_state", "train"]
