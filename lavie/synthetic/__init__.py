"""Synthetic inputs for the demo, the tests and the benchmarks: no download is needed anywhere.

* ``videos``: H.264 videos with known scene cuts, frames that encode their own index, or a pan at
  a known speed;
* ``manifests``: images, clip and image rows, and manifests in the platform's schemas;
* ``tiny_sd``: a tiny, randomly initialised Stable Diffusion folder in the diffusers layout;
* ``tiny_upscaler``: the same for the x4 upscaler the VSR stage starts from.

``python -m lavie.synthetic WORKDIR`` writes what the packaged ``tiny-cpu`` training config
expects beside a curation output ``WORKDIR/curated``: ``WORKDIR/tiny-sd`` and an image manifest in
``WORKDIR/images``.
"""

from lavie.synthetic.manifests import (
    clip_row,
    image_row,
    write_clip_manifest,
    write_image,
    write_image_manifest,
    write_image_set,
)
from lavie.synthetic.tiny_sd import TINY_UNET_CONFIG, write_tiny_sd
from lavie.synthetic.tiny_upscaler import TINY_UPSCALER_UNET_CONFIG, write_tiny_upscaler
from lavie.synthetic.training_inputs import prepare_training_inputs
from lavie.synthetic.videos import (
    SyntheticVideo,
    index_frame,
    index_level,
    level_index,
    scene_frames,
    write_pan_video,
    write_pattern_video,
    write_scene_video,
)

__all__ = [
    "TINY_UNET_CONFIG",
    "TINY_UPSCALER_UNET_CONFIG",
    "SyntheticVideo",
    "clip_row",
    "image_row",
    "index_frame",
    "index_level",
    "level_index",
    "prepare_training_inputs",
    "scene_frames",
    "write_clip_manifest",
    "write_image",
    "write_image_manifest",
    "write_image_set",
    "write_pan_video",
    "write_pattern_video",
    "write_scene_video",
    "write_tiny_sd",
    "write_tiny_upscaler",
]

