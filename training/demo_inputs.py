"""Inputs of the tiny training run beside curated clips: a tiny random SD folder and a generated
LAION-style image manifest (training.data's synthetic image writer).

    python -m training.demo_inputs WORKDIR [--images N]

writes ``WORKDIR/tiny-sd``, PNG files under ``WORKDIR/image_files`` and their Parquet manifest
in ``WORKDIR/images``, which ``training/configs/tiny-cpu.yaml`` expects next to
``WORKDIR/curated`` (a curation output folder).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training.data.synthetic import image_row, write_image, write_image_manifest
from training.tiny_sd import write_tiny_sd

IMAGE_CAPTIONS = (
    "a red car on a city road at night",
    "a blue sky over the sea",
    "a cat sitting on a wooden table",
    "a dog running across a green field",
    "an old library with dusty books",
    "a mountain road at sunrise",
)


def write_image_set(
    manifest: str | Path, files: str | Path, count: int = 12, height: int = 96, width: int = 128
) -> Path:
    """``count`` flat-grey PNGs of distinct levels under ``files`` with captions, and their image
    manifest in ``manifest`` (kept apart: a manifest folder holds Parquet files only)."""
    rows = []
    for i in range(count):
        path = write_image(Path(files) / f"image_{i:03d}.png", height, width, level=40 + (200 * i) // max(1, count))
        rows.append(image_row(str(path.resolve()), IMAGE_CAPTIONS[i % len(IMAGE_CAPTIONS)], width, height))
    return write_image_manifest(manifest, rows)


def prepare(workdir: str | Path, images: int = 12) -> dict[str, Path]:
    """Write ``workdir/tiny-sd``, ``workdir/image_files`` and ``workdir/images``; returns the
    SD folder and the image manifest."""
    workdir = Path(workdir)
    return {
        "tiny_sd": write_tiny_sd(workdir / "tiny-sd"),
        "images": write_image_set(workdir / "images", workdir / "image_files", images),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir")
    parser.add_argument("--images", type=int, default=12)
    args = parser.parse_args(argv)
    for name, path in prepare(args.workdir, args.images).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
