"""Opening videos wherever they live: local paths directly, anything else through fsspec."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

import fsspec
from fsspec.core import split_protocol


def is_local(uri: str) -> bool:
    protocol, _ = split_protocol(uri)
    return protocol in (None, "file", "local")


@contextmanager
def open_source(uri: str, storage_options: dict | None = None) -> Iterator[str | BinaryIO]:
    """A local path for local files (decoders open them fastest), else an fsspec file object.

    PyAV, PySceneDetect and decord all accept either, so object-storage inputs stream without a
    local copy.
    """
    if is_local(uri):
        yield split_protocol(uri)[1]
        return
    with fsspec.open(uri, "rb", **(storage_options or {})) as f:
        yield f
