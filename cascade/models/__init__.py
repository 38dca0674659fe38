"""The three networks of the LaVie cascade (paper, section 4) and their variants."""

from cascade.models.configs import SD1_UNET_CONFIG, X4_UPSCALER_UNET_CONFIG
from cascade.models.inflate import LoadingInfo
from cascade.models.interpolation import (
    InterpolationUNet3DModel,
    build_interpolation_condition,
    interpolation_source_frames,
)
from cascade.models.layout import FrameLayout
from cascade.models.long_video import LongVideoUNet3DModel, build_first_frame_condition
from cascade.models.lora import (
    SPATIAL_LORA_TARGETS,
    add_spatial_lora,
    load_spatial_lora,
    lora_parameters,
    save_spatial_lora,
    spatial_lora_config,
)
from cascade.models.unet_3d import BaseUNet3DModel, UNet3DModelOutput
from cascade.models.vsr import VSRUNet3DModel

__all__ = [
    "SD1_UNET_CONFIG",
    "SPATIAL_LORA_TARGETS",
    "X4_UPSCALER_UNET_CONFIG",
    "FrameLayout",
    "InterpolationUNet3DModel",
    "LoadingInfo",
    "LongVideoUNet3DModel",
    "BaseUNet3DModel",
    "UNet3DModelOutput",
    "VSRUNet3DModel",
    "add_spatial_lora",
    "build_first_frame_condition",
    "build_interpolation_condition",
    "interpolation_source_frames",
    "load_spatial_lora",
    "lora_parameters",
    "save_spatial_lora",
    "spatial_lora_config",
]
