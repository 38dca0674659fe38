"""User-facing errors of the cascade package.

Every message is a single line that names the path, key or shape at fault, so that it reads well in
a log line or a CLI error.
"""

from __future__ import annotations

from lavie.core.errors import UserError


class CascadeError(UserError):
    """Base class of the errors raised on purpose by :mod:`cascade`: all are the user's to fix, so
    the `lavie` command prints them as one line."""


class ModelLoadError(CascadeError, ValueError):
    """A model folder or checkpoint cannot be loaded (not a UNet, wrong shapes, missing keys...)."""


class ModelConfigError(CascadeError, ValueError):
    """A model config asks for something the 3D models do not implement or is inconsistent."""


class InputShapeError(CascadeError, ValueError):
    """A tensor passed to a model has the wrong rank, channel count or frame layout."""
