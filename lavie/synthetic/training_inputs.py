"""The inputs of the packaged ``tiny-cpu`` training config beside a curation output."""

from __future__ import annotations

from pathlib import Path

from lavie.synthetic.manifests import write_image_set
from lavie.synthetic.tiny_sd import write_tiny_sd


def prepare_training_inputs(workdir: str | Path, images: int = 12) -> dict[str, Path]:
    """Write ``workdir/tiny-sd``, ``workdir/image_files`` and ``workdir/images``; returns the SD
    folder and the image manifest."""
    workdir = Path(workdir)
    return {
        "tiny_sd": write_tiny_sd(workdir / "tiny-sd"),
        "images": write_image_set(workdir / "images", workdir / "image_files", images),
    }
