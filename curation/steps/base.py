"""What a curation step is: a declaration that the executor reads (datatrove's shape).

A step has one job. It declares its name (also the ``stage`` of the rejects it makes), the title
the statistics funnel shows, its kind, the config section it is given, what it needs from the
executor (``frames``: the clip's sampled frames) and where its code is (``module:attribute``,
imported only where the step runs, so that reading the declarations stays light).

Kinds and the code's signature (``config`` is the step's config section, ``context`` a
:class:`StepContext`):

* ``map``: ``fn(row, config, context) -> None`` updates one row (a video before the split step,
  a clip after it);
* ``split``: ``fn(row, config, context) -> list[dict]`` turns a video row into its clips, each
  given as the columns that differ from the video's;
* ``model``: ``cls(config, context)`` is built once per actor; ``instance(table) -> table`` takes
  a pyarrow batch of kept rows and returns the columns it sets, one row per input row. A model
  step that filters on what it computed declares a ``filter``, ``fn(row, config, context)`` like
  a ``map`` step's, run on each row once the model's columns are in it.

A step may declare a ``check``, ``fn(config)``, run on the driver before any work starts, so that a
config the step cannot use (a model folder of the wrong kind) fails in one line up front.

A step drops its row by raising :class:`Reject`; it never removes rows. The executor records the
reject under the step's name, times every step, and passes rows rejected earlier straight through.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Literal

from curation.steps.source import VideoSource
from lavie.core.storage import SealedOptions

StepKind = Literal["map", "split", "model"]
#: Steps of this kind take a batch in an actor pool; their config section sets the pool.
MODEL_SECTION_FIELDS = ("batch_size", "actors")


def model_device() -> str:
    """Where a model step's actor runs its model: its GPU when Ray gave it one."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Reject(Exception):
    """Raised by a step to drop its row (a video or a clip) with a reason and a detail."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class StepContext:
    """What every step may use besides its config section: storage access, the video being
    read (:meth:`source`) and frame sampling."""

    storage: SealedOptions = field(default_factory=lambda: SealedOptions({}))
    frame_positions: tuple[float, ...] = (0.1, 0.5, 0.9)
    #: Samples a second of the codec's motion vectors that scene detection takes for the motion
    #: step (None: it takes none).
    motion_vector_fps: float | None = None
    _options: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    _source: VideoSource | None = field(default=None, repr=False, compare=False)

    def storage_options(self) -> dict[str, Any]:
        """The storage options, credentials included (fetched once per process)."""
        if self._options is None:
            self._options = self.storage.open()
        return self._options

    def source(self, uri: str) -> VideoSource:
        """The video ``uri``, opened once for all the steps that read it in a row; asking for
        another video closes the previous one."""
        if self._source is None or self._source.uri != uri:
            self.close_source()
            self._source = VideoSource(uri, self.storage_options())
        return self._source

    def close_source(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None

    def __getstate__(self) -> dict[str, Any]:
        # Credentials and open files never travel in task arguments.
        return {**self.__dict__, "_options": None, "_source": None}


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    kind: StepKind
    run: str  # "package.module:attribute"
    section: str | None = None  # the CurationConfig field handed to the step
    needs: tuple[str, ...] = ()
    check: str | None = None  # "package.module:attribute", fn(config), run on the driver
    filter: str | None = None  # "package.module:attribute", fn(row, config, context) after a model

    def load(self, attribute: str = "run") -> Any:
        """The step's code (``run``), or its ``check`` or ``filter``."""
        module, _, name = getattr(self, attribute).partition(":")
        return getattr(importlib.import_module(module), name)

    def config_of(self, config: Any) -> Any:
        return getattr(config, self.section) if self.section else None

    def enabled(self, config: Any) -> bool:
        """A step whose section is unset (``None``) or says ``enabled: false`` does not run."""
        if self.section is None:
            return True
        section = self.config_of(config)
        return section is not None and bool(getattr(section, "enabled", True))
