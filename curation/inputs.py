"""Turn the INPUT arguments (paths, globs, fsspec URLs, folders) into a sorted list of video files.

Folders are walked recursively for files with a video extension; a file named directly is taken
whatever its extension (the probe rejects it if it is not a video). A named path that does not
exist is not an error: it becomes an ``input`` reject so that nothing given is lost.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from lavie.core.storage import filesystem, to_uri

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp"}
)
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class MissingInput:
    uri: str
    detail: str


@dataclass(frozen=True)
class ResolvedInputs:
    videos: tuple[str, ...]  # URIs: what every later stage opens and what manifests record
    missing: tuple[MissingInput, ...]


def _is_video_name(path: str) -> bool:
    return posixpath.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def resolve_inputs(specs: list[str], storage_options: dict | None = None) -> ResolvedInputs:
    """Expand INPUT arguments into video files, de-duplicated and sorted for stable sharding."""
    videos: set[str] = set()
    missing: list[MissingInput] = []
    for spec in specs:
        fs, path = filesystem(spec, storage_options)
        if any(ch in path for ch in _GLOB_CHARS):
            found = [p for p in fs.glob(path) if fs.isfile(p)]
            if not found:
                missing.append(MissingInput(spec, "pattern matched no file"))
        elif fs.isdir(path):
            found = [p for p in fs.find(path) if _is_video_name(p)]
            if not found:
                missing.append(MissingInput(spec, "folder holds no video file"))
        elif fs.isfile(path):
            found = [path]
        else:
            missing.append(MissingInput(to_uri(fs, path), "no such file or folder"))
            found = []
        videos.update(to_uri(fs, p) for p in found)
    return ResolvedInputs(videos=tuple(sorted(videos)), missing=tuple(missing))
