"""Turn the INPUT arguments (paths, globs, fsspec URLs, folders) into video files, streamed.

Nothing here builds the list of every file: folders and bucket prefixes are walked one directory
(one listing page) at a time, and a glob is matched while its fixed prefix is walked, so a prefix
of millions of objects costs the memory of one directory. The order is stable: the arguments in
the order given, each walked in sorted order, which is what makes shard numbers reproducible.

Folders are walked recursively for files with a video extension; a file named directly is taken
whatever its extension (the probe rejects it if it is not a video). A named path that does not
exist is not an error: it becomes an ``input`` reject so that nothing given is lost.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass

from fsspec.utils import glob_translate

from lavie.core.storage import filesystem, to_uri

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp"}
)
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class MissingInput:
    """An INPUT argument that names no file: recorded as an ``input`` reject."""

    uri: str
    detail: str


def _is_video_name(path: str) -> bool:
    return posixpath.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def _walk_files(fs, root: str) -> Iterator[str]:
    """Every file below ``root``, directory by directory, in sorted order."""
    for folder, dirs, files in fs.walk(root, topdown=True):
        dirs.sort()  # fsspec walks the folders left in `dirs`, in their order
        for name in sorted(files):
            yield posixpath.join(folder, name)


def _glob_root(path: str) -> str:
    """The longest folder of ``path`` with no glob character in it."""
    parts = path.split("/")
    fixed = next(i for i, part in enumerate(parts) if any(ch in part for ch in _GLOB_CHARS))
    return "/".join(parts[:fixed]) or "/"


def iter_input_files(specs: list[str], storage_options: dict | None = None) -> Iterator[str | MissingInput]:
    """The video URIs that the INPUT arguments name, and a :class:`MissingInput` for each
    argument that names none, streamed in a stable order."""
    for spec in specs:
        fs, path = filesystem(spec, storage_options)
        found = 0
        if any(ch in path for ch in _GLOB_CHARS):
            pattern = re.compile(glob_translate(path))
            root = _glob_root(path)
            for file in _walk_files(fs, root) if fs.isdir(root) else ():
                if pattern.match(file):
                    found += 1
                    yield to_uri(fs, file)
            if not found:
                yield MissingInput(spec, "pattern matched no file")
        elif fs.isdir(path):
            for file in _walk_files(fs, path):
                if _is_video_name(file):
                    found += 1
                    yield to_uri(fs, file)
            if not found:
                yield MissingInput(spec, "folder holds no video file")
        elif fs.isfile(path):
            yield to_uri(fs, path)
        else:
            yield MissingInput(to_uri(fs, path), "no such file or folder")
