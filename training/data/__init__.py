"""Training data: sharded manifest readers, video/image decoding and the curriculum mix.

Typical use inside a Ray Train worker::

    from training.data import JointLoader, JointVideoImageDataset, parse_data_config

    config = parse_data_config(yaml_dict["data"])          # one-line UserError on bad keys
    dataset = JointVideoImageDataset(config, rank, world_size, start_step,
                                     batch_size=2, grad_accum_steps=4)
    loader = JointLoader(dataset, num_workers=6)
    for batch in loader:                                   # batch["video"]: (B, T, 3, H, W) uint8
        ...
    checkpoint["data"] = loader.state_dict()

Run :func:`validate_sources` on the driver before starting workers.
"""

from training.data.config import DataConfig, SourceConfig, parse_data_config
from training.data.curriculum import Curriculum
from training.data.dataset import JointVideoImageDataset, SourceCounters, collate_samples
from training.data.decode import ClipSpec, SkipSample, load_clip, load_image
from training.data.loader import JointLoader
from training.data.manifests import ManifestIndex, ShardReader, index_manifest, validate_sources

__all__ = [
    "ClipSpec",
    "Curriculum",
    "DataConfig",
    "JointLoader",
    "JointVideoImageDataset",
    "ManifestIndex",
    "ShardReader",
    "SkipSample",
    "SourceConfig",
    "SourceCounters",
    "collate_samples",
    "load_clip",
    "load_image",
    "index_manifest",
    "parse_data_config",
    "validate_sources",
]
