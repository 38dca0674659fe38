"""Many Ray tasks through a bounded window: what a driver holds is the tasks in flight.

Jobs that run one task per unit of work (a curation shard, a manifest part) submit them through
:func:`bounded_tasks` instead of all at once, so the driver's memory and the object store's
bookkeeping depend on the cluster's size, not on the number of units (DESIGN.md, "Scale").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

#: Tasks kept in flight per CPU of the cluster: one running and one queued behind it.
TASKS_PER_CPU = 2


def bounded_tasks(task: Any, arguments: Iterable[tuple[Any, ...]], window: int | None = None) -> Iterator[Any]:
    """Run ``task.remote(*args)`` for each of ``arguments`` (consumed lazily), at most ``window``
    at a time (default :data:`TASKS_PER_CPU` per cluster CPU); yield results as tasks finish."""
    import ray

    if window is None:
        window = max(1, int(ray.cluster_resources().get("CPU", 1)) * TASKS_PER_CPU)
    pending = iter(arguments)
    in_flight: list[Any] = []
    exhausted = False
    while True:
        while not exhausted and len(in_flight) < window:
            args = next(pending, None)
            if args is None:
                exhausted = True
            else:
                in_flight.append(task.remote(*args))
        if not in_flight:
            return
        ready, in_flight = ray.wait(in_flight, num_returns=1)
        yield ray.get(ready[0])
