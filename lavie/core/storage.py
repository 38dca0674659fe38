"""Storage: local paths and fsspec URLs (``s3://``, ``gs://``, ...) behind one set of functions.

The storage-option rule, in one place:

* Options come from ``--storage-option KEY=VALUE`` flags (:func:`parse_storage_options`) or a
  config's ``storage_options`` mapping, and are handed to fsspec by :func:`filesystem` after
  :func:`normalize_options`: ``endpoint_url`` and ``region_name`` move into ``client_kwargs``
  (where s3fs takes them), ``true``/``false`` strings become booleans. Local paths take no options.
* Credentials normally come from the environment or the usual credentials files (``AWS_*``
  variables, ``~/.aws/credentials``), which fsspec's backends read themselves.
* A credential given as an option (a key named in :data:`SECRET_KEYS`) is used but never written
  back out: :func:`redact` is what may be logged or stored, and :class:`SealedOptions` is how
  options reach Ray tasks, actors and Train workers (the secret part through Ray's object store,
  so it appears in no task argument, job or train state, or file).

Writes that readers (or a resumed run) must never see half done go through :func:`atomic_write`
and :func:`replace_folder`.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import fsspec
from fsspec.core import split_protocol

from lavie.core.config import parse_key_value
from lavie.core.errors import UserError, message_line

LOCAL_PROTOCOLS = frozenset({None, "file", "local"})

#: Option names whose values are credentials: used, never written, logged or shown by Ray.
SECRET_KEYS = frozenset({
    "key", "secret", "token", "password", "session_token", "client_secret", "account_key", "sas_token",
    "connection_string", "credentials", "aws_access_key_id", "aws_secret_access_key", "aws_session_token",
})  # fmt: skip

#: Options s3fs takes inside ``client_kwargs`` (botocore client arguments), accepted at the top level.
_CLIENT_KWARGS = ("endpoint_url", "region_name")
REDACTED = "***"


# --------------------------------------------------------------------------- the option rule
def parse_storage_options(pairs: Iterable[str]) -> dict[str, Any]:
    """``--storage-option KEY=VALUE`` items → normalised options (see :func:`normalize_options`)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, value = parse_key_value(pair, "--storage-option")
        options[key] = value
    return normalize_options(options)


def normalize_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The one storage-option rule: client arguments into ``client_kwargs``, boolean strings to bools."""
    result: dict[str, Any] = {}
    for key, value in (options or {}).items():
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if key in _CLIENT_KWARGS:
            result.setdefault("client_kwargs", {})[key] = value
        elif key == "client_kwargs" and isinstance(value, Mapping):
            result.setdefault("client_kwargs", {}).update(value)
        else:
            result[key] = value
    return result


#: Environment variable names that hold credentials (``AWS_SECRET_ACCESS_KEY``, ``HF_TOKEN``...).
_SECRET_ENV = re.compile(r"SECRET|TOKEN|PASSWORD|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    """Whether an option or environment variable named ``key`` holds a credential."""
    return key.lower() in SECRET_KEYS or bool(_SECRET_ENV.search(key))


def redact_command_line(argv: Sequence[str]) -> list[str]:
    """``argv`` with the value of every credential masked: ``KEY=VALUE`` arguments (of
    ``--storage-option``, ``--set ...storage_options.KEY=...``, ``--env``) whose key, or its last
    dotted part, names a credential."""
    redacted = []
    for item in argv:
        prefix, assignment = "", item
        if item.startswith("--"):  # --option=KEY=VALUE
            flag, eq, assignment = item.partition("=")
            prefix = flag + eq
        key, sep, _ = assignment.partition("=")
        secret = bool(sep) and is_secret_key(key.rsplit(".", 1)[-1])
        redacted.append(f"{prefix}{key}={REDACTED}" if secret else item)
    return redacted


def split_secrets(options: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(public, secret)`` parts of storage options."""
    public = {k: v for k, v in (options or {}).items() if not is_secret_key(k)}
    secret = {k: v for k, v in (options or {}).items() if is_secret_key(k)}
    return public, secret


def redact(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Options as they may be shown or stored: every credential value replaced by ``***``."""
    return {k: REDACTED if is_secret_key(k) else v for k, v in (options or {}).items()}


@dataclass(frozen=True)
class SealedOptions:
    """Storage options on their way to Ray tasks, actors and Train workers.

    Public values travel inline. Credentials are put into Ray's object store once, on the driver,
    and only the reference travels: Ray never shows or stores them in task arguments, job state or
    a Train run's ``train_loop_config``. :meth:`open` (in the task) returns the full options.
    """

    public: dict[str, Any]
    secret_ref: Any = None  # ray.ObjectRef of the credential part, or None when there is none

    @classmethod
    def seal(cls, options: Mapping[str, Any] | None) -> SealedOptions:
        public, secret = split_secrets(normalize_options(options))
        if not secret:
            return cls(public)
        import ray

        return cls(public, ray.put(secret))

    def open(self) -> dict[str, Any]:
        if self.secret_ref is None:
            return dict(self.public)
        import ray

        return {**self.public, **ray.get(self.secret_ref)}


# --------------------------------------------------------------------------- filesystems
def is_local(url: str) -> bool:
    """Whether ``url`` is a local path (plain, or ``file://``)."""
    return split_protocol(str(url))[0] in LOCAL_PROTOCOLS


def local_path(url: str) -> str:
    """The local path of a plain path or ``file://`` URL."""
    return split_protocol(str(url))[1]


def filesystem(url: str, options: Mapping[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem and in-filesystem path for ``url``, with one-line errors."""
    url = str(url)
    protocol = split_protocol(url)[0] or "file"
    try:
        fs_class = fsspec.get_filesystem_class(protocol)
    except ValueError:
        raise UserError(f"{url}: unknown URL scheme '{protocol}://'") from None
    except ImportError as exc:
        raise UserError(f"{url}: the '{protocol}://' scheme needs a package that is not installed ({exc})") from None
    fs = fs_class() if protocol in LOCAL_PROTOCOLS else fs_class(**normalize_options(options))
    return fs, fs._strip_protocol(url)


def arrow_filesystem(url: str, options: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """A pyarrow filesystem and path for ``url`` (pyarrow's own for local paths, fsspec's otherwise)."""
    import pyarrow.fs as pafs

    fs, path = filesystem(url, options)
    if is_local(url):
        return pafs.LocalFileSystem(), path
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def to_uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """A URI that reopens ``path``: plain absolute paths for local files, ``proto://`` otherwise."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in LOCAL_PROTOCOLS:
        return path
    return fs.unstrip_protocol(path)


def join(url: str, *parts: str) -> str:
    """``url`` with path ``parts`` appended (``/`` separated for URLs and local paths alike)."""
    return posixpath.join(str(url).rstrip("/") or "/", *parts)


@contextmanager
def open_input(uri: str, options: Mapping[str, Any] | None = None) -> Iterator[str | BinaryIO]:
    """A local path for local files (decoders open them fastest), else an fsspec file object.

    PyAV, PySceneDetect and decord accept either, so object-storage inputs stream without a
    local copy.
    """
    if is_local(uri):
        yield local_path(uri)
        return
    with fsspec.open(uri, "rb", **normalize_options(options)) as handle:
        yield handle


# --------------------------------------------------------------------------- writes
def atomic_write(url: str, data: bytes, options: Mapping[str, Any] | None = None) -> None:
    """Write ``data`` so that no reader ever sees a partial file under ``url``.

    Local files: a temporary file in the same folder, then a rename. Object stores: one PUT, which
    they make visible atomically.
    """
    if is_local(url):
        path = Path(local_path(url))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return
    fs, path = filesystem(url, options)
    fs.pipe_file(path, data)


def atomic_write_json(url: str, value: Any, options: Mapping[str, Any] | None = None) -> None:
    atomic_write(url, json.dumps(value, indent=2, sort_keys=True, default=str).encode(), options)


def read_json(url: str, options: Mapping[str, Any] | None = None) -> Any:
    fs, path = filesystem(url, options)
    with fs.open(path, "rb") as handle:
        return json.loads(handle.read())


def replace_folder(local: str | Path, url: str, options: Mapping[str, Any] | None = None) -> None:
    """Put the local folder ``local`` at ``url``, replacing what was there.

    Locally the copy is staged beside the target and renamed into place; on object stores the
    old objects are removed and the new ones uploaded.
    """
    fs, path = filesystem(url, options)
    if fs.exists(path):
        fs.rm(path, recursive=True)
    if is_local(url):
        parent = Path(path).parent
        parent.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(dir=parent, prefix=".staged-"))
        try:
            shutil.copytree(local, staged, dirs_exist_ok=True)
            os.replace(staged, path)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        return
    fs.put(str(local).rstrip("/") + "/", path, recursive=True)


def readable(url: str, options: Mapping[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """:func:`filesystem`, checking that ``url`` exists: a one-line error otherwise."""
    fs, path = filesystem(url, options)
    try:
        exists = fs.exists(path)
    except OSError as exc:
        raise UserError(f"{url}: cannot be read ({message_line(exc)})") from None
    if not exists:
        raise UserError(f"{url}: no such file or folder")
    return fs, path
