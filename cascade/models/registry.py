"""The 3D model classes by name, so that loaders tell a 3D folder from a 2D one and name the class
that loads it, without importing the classes (which import the loaders).

A folder's ``config.json`` records its class in ``_class_name``. Names written by earlier versions
of the platform are kept working through :data:`LEGACY_NAMES`: users have such folders on disk.
"""

from __future__ import annotations

from typing import Any

MODEL_CLASSES: dict[str, type[Any]] = {}

#: ``_class_name`` values of earlier versions → the class that loads them now. The base model was
#: called ``UNet3DConditionModel``, a name diffusers uses for another architecture.
LEGACY_NAMES = {"UNet3DConditionModel": "BaseUNet3DModel"}


def register(cls: type[Any]) -> type[Any]:
    MODEL_CLASSES[cls.__name__] = cls
    return cls


def canonical_name(name: str) -> str:
    """The current class name for a ``_class_name`` read from a folder."""
    return LEGACY_NAMES.get(name, name)


def model_class(name: str) -> type[Any] | None:
    """The 3D model class a ``_class_name`` names, or None when it names none."""
    return MODEL_CLASSES.get(canonical_name(name))
