"""The LaVie cascade: base text-to-video, temporal interpolation and video super-resolution models."""

from cascade.errors import CascadeError, InputShapeError, ModelConfigError, ModelLoadError

__all__ = ["CascadeError", "InputShapeError", "ModelConfigError", "ModelLoadError"]
