"""Reading a published checkpoint: plain tensors only, memory-mapped, never executing its contents.

``torch.load(weights_only=True)`` unpickles nothing but tensors and containers; anything else (a
pickled object, a TorchScript or ``torch.package`` archive holding code) is refused in one line.
Files in torch's zip format are memory-mapped, so their tensors are pages of the file, read on
demand, not a copy in memory.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from cascade.errors import ModelLoadError
from lavie.core.errors import message_line

#: Keys under which a training checkpoint nests its state dict, in order of preference (the
#: release saves ``{'ema': state_dict}``).
STATE_DICT_WRAPPERS = ("ema", "state_dict")

# In the (multi-line) refusals of torch's weights-only unpickler: the class it met, or why it stopped.
_GLOBAL = re.compile(r"GLOBAL (\S+)")
_UNPICKLER_REASON = re.compile(r"WeightsUnpickler error:\s*(\S.*)")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state dict held by a torch file: ``{'ema': sd}``, ``{'state_dict': sd}`` or ``sd``."""
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file")
    is_zip = zipfile.is_zipfile(path)
    if is_zip:
        _refuse_code(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as err:
        found = _GLOBAL.search(str(err))
        if found:
            raise ModelLoadError(f"{path}: refused, it holds a pickled {found.group(1)}, not only tensors") from None
        reason = _UNPICKLER_REASON.search(str(err))
        raise ModelLoadError(
            f"{path}: cannot read as a torch checkpoint ({reason.group(1) if reason else message_line(err)})"
        ) from None
    except Exception as err:  # truncated or foreign files raise anything from OSError to EOFError
        raise ModelLoadError(f"{path}: cannot read as a torch checkpoint ({message_line(err)})") from None
    return _unwrap(loaded, path)


def _refuse_code(path: Path) -> None:
    """TorchScript and ``torch.package`` archives carry Python code beside their tensors."""
    with zipfile.ZipFile(path) as archive:
        code = next((name for name in archive.namelist() if "/code/" in name or name.endswith(".py")), None)
    if code is not None:
        raise ModelLoadError(f"{path}: refused, it is an archive holding code ({code}), not a state dict")


def _unwrap(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(loaded, Mapping):
        wrapper = next((key for key in STATE_DICT_WRAPPERS if key in loaded), None)
        if wrapper is not None:
            loaded = loaded[wrapper]
    if not isinstance(loaded, Mapping) or not loaded:
        raise ModelLoadError(
            f"{path}: holds a {type(loaded).__name__}, not a state dict "
            "(expected {'ema': state_dict}, {'state_dict': state_dict} or a state dict)"
        )
    for key, value in loaded.items():
        if not isinstance(key, str) or not torch.is_tensor(value):
            raise ModelLoadError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor of a state dict")
    return dict(loaded)
