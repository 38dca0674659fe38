"""One video, opened once for every step that reads it.

Probe, scene detection, the training-decode check and frame sampling all read the same file. A
local file is read in place. A remote one (object storage) is fetched once into a local temporary
file, so the store sees one GET per video instead of one or more per step, and the decoders seek
in it freely. Readers are kept per output size, so the clips of one video share them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from typing import Any

from lavie.core.storage import filesystem, is_local, local_path
from lavie.core.video import VideoReader, VideoReadError, open_video


class VideoSource:
    """A video's local path and its open readers; :meth:`close` releases both."""

    def __init__(self, uri: str, storage_options: Mapping[str, Any] | None) -> None:
        self.uri = uri
        self._options = storage_options
        self._fetched: str | None = None
        self._readers: dict[tuple[int, int] | None, VideoReader] = {}

    def path(self) -> str:
        """A local path to the video (raises FileNotFoundError when there is none)."""
        if is_local(self.uri):
            return local_path(self.uri)
        if self._fetched is None:
            fs, path = filesystem(self.uri, self._options)
            suffix = os.path.splitext(path)[1]
            fd, target = tempfile.mkstemp(prefix="lavie-video-", suffix=suffix)
            os.close(fd)
            try:
                fs.get_file(path, target)
            except BaseException:
                os.unlink(target)
                raise
            self._fetched = target
        return self._fetched

    def reader(self, size: tuple[int, int] | None = None) -> VideoReader:
        """The platform's reader over this video at ``size`` (height, width), opened once."""
        if size not in self._readers:
            path = self.path()
            try:
                reader = open_video(path, size=size)
            except VideoReadError as exc:  # name the video, not a temporary copy
                raise VideoReadError(str(exc).replace(path, self.uri)) from None
            reader.uri = self.uri
            self._readers[size] = reader
        return self._readers[size]

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()
        if self._fetched is not None:
            os.unlink(self._fetched)
            self._fetched = None
