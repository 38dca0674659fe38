"""Turn the INPUT arguments (paths, globs, fsspec URLs, folders) into a sorted list of video files.

Folders are walked recursively for files with a video extension; a file named directly is taken
whatever its extension (the probe rejects it if it is not a video). A named path that does not
exist is not an error: it becomes an ``input`` reject so that nothing given is lost.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

import fsspec
from fsspec.core import split_protocol

from curation.errors import UserError

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


def filesystem_for(url: str, storage_options: dict | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem and in-filesystem path for ``url``, with one-line errors."""
    protocol, _ = split_protocol(url)
    protocol = protocol or "file"
    try:
        fs_class = fsspec.get_filesystem_class(protocol)
    except ValueError:
        raise UserError(f"{url}: unknown URL scheme '{protocol}://'") from None
    except ImportError as exc:
        raise UserError(f"{url}: the '{protocol}://' scheme needs a package that is not installed ({exc})") from None
    fs = fs_class(**(storage_options or {}) if protocol != "file" else {})
    return fs, fs._strip_protocol(url)


def to_uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """A URI that reopens ``path``: plain absolute paths for local files, ``proto://`` otherwise."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        return path
    return fs.unstrip_protocol(path)


def _is_video_name(path: str) -> bool:
    return posixpath.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def resolve_inputs(specs: list[str], storage_options: dict | None = None) -> ResolvedInputs:
    """Expand INPUT arguments into video files, de-duplicated and sorted for stable sharding."""
    videos: set[str] = set()
    missing: list[MissingInput] = []
    for spec in specs:
        fs, path = filesystem_for(spec, storage_options)
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
