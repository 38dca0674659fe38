"""Per-video model outputs over a Ray Data actor pool, one work file per video, resumable.

The driver lists the work folder once and sends only the items without a file: a re-run after an
interruption computes what is missing and nothing else, and a finished run starts no cluster at
all. Each actor loads the model once (on its GPU when the cluster has GPUs: ``num_gpus=1`` per
actor), decodes its items with :func:`lavie.core.video.open_video`, runs them in batches and
writes each item's output (``<key>.npy``) atomically before returning it.

What is computed is a :class:`FeatureSpec`: which frames of an item, how the model is loaded, and
what it gives for a batch of items. An item that cannot be measured (a missing or undecodable
file, fewer frames than the spec needs) is reported back, not raised in the actor, so that one
bad video does not lose the batch's work; the caller turns them into one error line.
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
from pydantic import Field

from evaluation.sets import VideoItem
from lavie.core.config import StrictModel
from lavie.core.errors import UserError, message_line, require_ray
from lavie.core.storage import SealedOptions, atomic_write, filesystem, join
from lavie.core.video import VideoReadError, open_video

ProgressCallback = Callable[[int, int], None]


class ItemError(Exception):
    """An item the spec cannot measure; the message says why (one line)."""


class PoolOptions(StrictModel):
    """How the work is spread; results do not depend on it."""

    batch_size: int = Field(4, ge=1)  # items per model call
    actors: int | None = Field(None, ge=1)  # None: one per GPU of the cluster, else 1


class FeatureSpec(Protocol):
    """What to compute per item (picklable: it travels to the actors)."""

    def frame_indices(self, start: int, end: int) -> list[int]:
        """The frames of ``[start, end)`` to decode; :class:`ItemError` when there are too few."""
        ...

    def load(self, device: str) -> Any:
        """The model, built once per actor."""
        ...

    def compute(self, model: Any, frames: list[np.ndarray], items: list[dict[str, Any]]) -> list[np.ndarray]:
        """One output array per item, from its uint8 ``(T, H, W, 3)`` frames."""
        ...


@dataclass
class Extraction:
    """The outputs by item key, the items that failed (label → why), and how many were computed now."""

    values: dict[str, np.ndarray]
    failed: dict[str, str]
    computed: int
    reused: int


def read_item(item: Mapping[str, Any], spec: FeatureSpec, storage_options: Mapping[str, Any] | None) -> np.ndarray:
    """The item's frames, as the spec picks them."""
    try:
        with open_video(item["uri"], storage_options) as reader:
            length = len(reader)
            end = length if item["end_frame"] is None else item["end_frame"]
            if end > length:
                raise ItemError(f"the clip ends at frame {end}, the video has {length}")
            return reader.read(spec.frame_indices(item["start_frame"], end))
    except VideoReadError as exc:
        raise ItemError(str(exc).removeprefix(f"{item['uri']}: ")) from None


class FeatureActor:
    """One pool actor: the spec's model, and the storage options (credentials fetched here)."""

    def __init__(self, spec: FeatureSpec, storage: SealedOptions) -> None:
        import torch

        self.spec = spec
        self.options = storage.open()
        self.model = spec.load("cuda" if torch.cuda.is_available() else "cpu")

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        frames, ready, errors = [], [], {}
        for row in rows:
            try:
                frames.append(read_item(row, self.spec, self.options))
                ready.append(row)
            except ItemError as exc:
                errors[row["key"]] = str(exc)
        try:
            outputs = self.spec.compute(self.model, frames, ready) if ready else []
        except UserError as exc:  # the model refuses the batch (its output has the wrong shape, say)
            errors.update({row["key"]: message_line(exc) for row in ready})
            ready, outputs = [], []
        values = dict(zip((r["key"] for r in ready), outputs))
        for row in ready:
            atomic_write(row["path"], npy_bytes(values[row["key"]]), self.options)
        return pa.table({
            "key": [r["key"] for r in rows],
            "error": [errors.get(r["key"]) for r in rows],
            "value": pa.array([values[r["key"]].tolist() if r["key"] in values else None for r in rows], pa.list_(pa.float64())),
        })  # fmt: skip


def npy_bytes(value: np.ndarray) -> bytes:
    sink = io.BytesIO()
    np.save(sink, np.asarray(value), allow_pickle=False)
    return sink.getvalue()


def finished_keys(work: str, storage_options: Mapping[str, Any] | None) -> set[str]:
    """Keys of the items whose work file exists (one listing of the folder)."""
    fs, path = filesystem(work, storage_options)
    if not fs.isdir(path):
        return set()
    names = (posixpath.basename(p) for p in fs.ls(path, detail=False))
    return {name[: -len(".npy")] for name in names if name.endswith(".npy")}


def read_value(work: str, key: str, storage_options: Mapping[str, Any] | None) -> np.ndarray:
    fs, path = filesystem(join(work, f"{key}.npy"), storage_options)
    with fs.open(path, "rb") as handle:
        return np.load(io.BytesIO(handle.read()), allow_pickle=False)


def extract(
    items: Sequence[VideoItem],
    spec: FeatureSpec,
    work: str,
    *,
    ensure_ray: Callable[[], None],
    pool: PoolOptions | None = None,
    storage_options: Mapping[str, Any] | None = None,
    on_progress: ProgressCallback | None = None,
) -> Extraction:
    """The spec's output for every item: read from ``work`` where a file exists, computed on the
    actor pool otherwise (``ensure_ray`` is called only then)."""
    pool = pool or PoolOptions()
    unique = {item.key: item for item in items}
    done = finished_keys(work, storage_options) & unique.keys()
    values = {key: read_value(work, key, storage_options) for key in done}
    todo = [
        {"key": key, "uri": item.uri, "start_frame": item.start_frame, "end_frame": item.end_frame,
         "caption": item.caption, "path": join(work, f"{key}.npy")}
        for key, item in unique.items() if key not in done
    ]  # fmt: skip
    failed: dict[str, str] = {}
    if on_progress:
        on_progress(len(done), len(unique))
    if todo:
        ensure_ray()
        import ray
        import ray.data

        gpus = int(ray.cluster_resources().get("GPU", 0))
        dataset = ray.data.from_items(todo, override_num_blocks=-(-len(todo) // pool.batch_size)).map_batches(
            FeatureActor,
            fn_constructor_kwargs={"spec": spec, "storage": SealedOptions.seal(storage_options)},
            batch_size=pool.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=pool.actors or max(gpus, 1)),
            num_gpus=1 if gpus else 0,
        )
        for row in dataset.iter_rows():
            if row["error"] is not None:
                failed[unique[row["key"]].label] = row["error"]
            else:
                values[row["key"]] = np.asarray(row["value"], dtype=np.float64)
            if on_progress:
                on_progress(len(values) + len(failed), len(unique))
    return Extraction(values, failed, computed=len(todo) - len(failed), reused=len(done))


def connect_once(connect: Callable[[], None] | None, job: str) -> Callable[[], None]:
    """A callable that joins the cluster (``connect``, else checks that Ray is connected) the
    first time it is called, and does nothing after."""
    state = {"done": False}

    def ensure() -> None:
        if not state["done"]:
            (connect or (lambda: require_ray(job)))()
            state["done"] = True

    return ensure


def failure_line(where: str, failed: Mapping[str, str], total: int) -> str:
    """``where: 2 of 9 videos cannot be measured: a.mp4: 12 frames, ... (and 1 more)``."""
    label, why = next(iter(sorted(failed.items())))
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    return f"{where}: {len(failed)} of {total} video(s) cannot be measured: {label}: {why}{more}"
