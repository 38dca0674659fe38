"""Training metrics: reduced over ranks, reported to Ray, written for TensorBoard and as JSON lines.

Every ``log_every`` steps all ranks reduce their running sums (one ``all_reduce``), so every rank
holds the same global figures (Ray keeps rank 0's). Rank 0 writes them to the run's ``logs/``
folder: TensorBoard event files under ``logs/tensorboard/`` and one ``logs/metrics-<t>.jsonl``
per worker-group start (a restart after a failure appends a new file, so the full history,
redone steps included, stays readable with :func:`read_metrics`). For a bucket URL the folder is
staged locally and uploaded at every checkpoint and at the end.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from lavie.core.storage import filesystem, is_local, join, local_path
from training.data.decode import SKIP_REASONS

LOGS_DIR = "logs"


class MetricsTracker:
    """Running sums since the last report, reduced over ranks on :meth:`reduce`."""

    def __init__(self, sources: Iterable[str]) -> None:
        self.sources = list(sources)
        self._reset()
        self._started = time.perf_counter()

    def _reset(self) -> None:
        # Losses stay tensors (on the GPU, when training there) until reduce(): no sync per step.
        self.loss: torch.Tensor | float = 0.0
        self.loss_video: torch.Tensor | float = 0.0
        self.loss_image: torch.Tensor | float = 0.0
        self.micro_steps = 0
        self.samples = 0
        self.dropped = 0
        self.captions = 0
        self._started = time.perf_counter()

    def add(
        self,
        *,
        loss: torch.Tensor | float,
        loss_video: torch.Tensor | float,
        loss_image: torch.Tensor | float,
        samples: int,
        dropped: int,
        captions: int,
    ) -> None:
        self.loss = self.loss + (loss.detach().float() if torch.is_tensor(loss) else loss)
        self.loss_video = self.loss_video + (loss_video.detach().float() if torch.is_tensor(loss_video) else loss_video)
        self.loss_image = self.loss_image + (loss_image.detach().float() if torch.is_tensor(loss_image) else loss_image)
        self.micro_steps += 1
        self.samples += samples
        self.dropped += dropped
        self.captions += captions

    def reduce(self, *, step: int, lr: float, counters: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
        """Global metrics after ``step`` optimizer steps (collective: every rank must call it)."""
        elapsed = time.perf_counter() - self._started
        values = [
            float(self.loss), float(self.loss_video), float(self.loss_image), float(self.micro_steps),
            float(self.samples), float(self.dropped), float(self.captions),
        ]  # fmt: skip
        for name in self.sources:
            c = counters.get(name, {})
            values += [
                float(c.get("drawn", 0)),
                float(sum(c.get(reason, 0) for reason in SKIP_REASONS)),
                float(c.get("precomputed", 0)),
            ]
        tensor = torch.tensor(values, dtype=torch.float64)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(tensor)
            elapsed_t = torch.tensor([elapsed], dtype=torch.float64)
            torch.distributed.all_reduce(elapsed_t, op=torch.distributed.ReduceOp.MAX)
            elapsed = float(elapsed_t)
        v = tensor.tolist()
        micro = max(v[3], 1.0)
        metrics: dict[str, Any] = {
            "step": step,
            "loss": v[0] / micro,
            "loss_video": v[1] / micro,
            "loss_image": v[2] / micro,
            "lr": lr,
            "samples": int(v[4]),
            "samples_per_sec": v[4] / elapsed if elapsed > 0 else 0.0,
            "caption_dropout_rate": v[5] / v[6] if v[6] else 0.0,
        }
        for i, name in enumerate(self.sources):
            metrics[f"count/{name}"] = int(v[7 + 3 * i])
            metrics[f"skipped/{name}"] = int(v[8 + 3 * i])
            metrics[f"precomputed/{name}"] = int(v[9 + 3 * i])
        self._reset()
        return metrics


class MetricsWriter:
    """Rank 0's TensorBoard and JSON-lines writer for the run folder ``run_uri``."""

    def __init__(self, run_uri: str, storage_options: Mapping[str, Any] | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.remote = not is_local(run_uri)
        self.target = join(run_uri, LOGS_DIR)
        self.storage_options = dict(storage_options or {})
        self.folder = Path(tempfile.mkdtemp(prefix="lavie-logs-")) if self.remote else Path(local_path(self.target))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.tensorboard = SummaryWriter(str(self.folder / "tensorboard"))
        self.jsonl = self.folder / f"metrics-{time.time_ns()}.jsonl"

    def write(self, metrics: Mapping[str, Any]) -> None:
        step = int(metrics["step"])
        for key, value in metrics.items():
            if key != "step" and isinstance(value, (int, float)):
                self.tensorboard.add_scalar(key, value, step)
        with open(self.jsonl, "a") as f:
            f.write(json.dumps({**metrics, "time": time.time()}) + "\n")

    def sync(self) -> None:
        self.tensorboard.flush()
        if self.remote:
            fs, path = filesystem(self.target, self.storage_options)
            fs.put(str(self.folder).rstrip("/") + "/", path, recursive=True)

    def close(self) -> None:
        self.sync()
        self.tensorboard.close()
        if self.remote:
            shutil.rmtree(self.folder, ignore_errors=True)


def read_metrics(run_uri: str, storage_options: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every metrics line written for a run, in the order written (restarts included)."""
    fs, path = filesystem(join(run_uri, LOGS_DIR), storage_options)
    rows: list[dict[str, Any]] = []
    for file in sorted(fs.glob(f"{path}/metrics-*.jsonl")):
        with fs.open(file, "r") as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


def final_losses(rows: Iterable[Mapping[str, Any]]) -> dict[int, float]:
    """Loss per step, the last value written for each step (after a restart: the redone one)."""
    return {int(r["step"]): float(r["loss"]) for r in rows}


def format_progress(metrics: Mapping[str, Any], max_steps: int) -> str:
    """One progress line: step, loss, lr, throughput, per-source counts."""
    counts = " ".join(
        f"{key.split('/', 1)[1]}={value}" for key, value in metrics.items() if key.startswith("count/")
    )
    line = (
        f"step {metrics['step']}/{max_steps}  loss {metrics['loss']:.4f} "
        f"(video {metrics['loss_video']:.4f}, image {metrics['loss_image']:.4f})  "
        f"lr {metrics['lr']:.2e}  {metrics['samples_per_sec']:.2f} samples/s  {counts}"
    )
    if metrics.get("checkpoint"):
        line += f"  [{metrics['checkpoint']}]"
    return line
