"""Batches from a :class:`JointVideoImageDataset`, in-process or from DataLoader workers, with the
data position tracked on the consumer side so that ``state_dict()`` matches what was consumed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader

from training.data.dataset import JointVideoImageDataset, collate_samples


class JointLoader:
    """Iterate collated batches of ``dataset.batch_size`` samples.

    ``num_workers=0`` decodes in the calling process. With ``num_workers > 0`` a torch
    DataLoader decodes in worker processes; each new iteration starts its workers at the current
    position, so prefetched but unconsumed batches are never lost or repeated.

    Worker start method: the platform default (fork on Linux up to Python 3.13) and
    ``"forkserver"`` work. Under ``"spawn"`` batches are right, but a worker sometimes
    aborts in native-library teardown at interpreter exit ("terminate called without an active
    exception"), which the DataLoader then reports as a failed worker; avoid it.
    """

    def __init__(
        self,
        dataset: JointVideoImageDataset,
        num_workers: int = 0,
        *,
        pin_memory: bool = False,
        prefetch_factor: int = 2,
        multiprocessing_context: str | None = None,
    ) -> None:
        self.dataset = dataset
        self.num_workers = num_workers
        self._pin_memory = pin_memory
        self._prefetch_factor = prefetch_factor
        self._context = multiprocessing_context

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.num_workers == 0:
            samples = iter(self.dataset)  # advances the dataset's position itself
            while True:
                yield collate_samples([next(samples) for _ in range(self.dataset.batch_size)])
        loader = DataLoader(
            self.dataset,
            batch_size=self.dataset.batch_size,
            collate_fn=collate_samples,
            num_workers=self.num_workers,
            pin_memory=self._pin_memory,
            prefetch_factor=self._prefetch_factor,
            multiprocessing_context=self._context,
        )
        for batch in loader:
            self.dataset.observe_batch(batch)
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return self.dataset.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dataset.load_state_dict(state)

    def counters(self) -> dict[str, dict[str, int]]:
        return self.dataset.counters()
