"""`make demo`: the platform end to end on the embedded local Ray, on data it generates.

Generates a small raw-video corpus with captions and categories (plus a few broken files), curates
it into Parquet manifests, writes the statistics report (`lavie stats`), trains a tiny base model
on the curated clips plus generated images (`lavie train tiny-cpu`: 2 workers, ZeRO-2) and exports
it as a `cascade.models` folder, assembles a cascade folder from it and generates a video with
`lavie generate`, and prints where everything is.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
from pathlib import Path

from curation.config import CurationConfig
from curation.pipeline import CurationRequest, run_curation
from lavie.cli import main as lavie
from lavie.synthetic import prepare_training_inputs, write_scene_video
from ray_jobs.cluster import connect

CATEGORIES = ("Travel", "Animation", "Documentary", "Sports", "Music", "Ads and Commercials")
CAPTIONS = (
    "a drone flies over a winding mountain road at sunrise",
    "a cartoon fox jumps across floating colourful platforms",
    "a slow pan across an old library full of dusty books",
    "a surfer rides a large turquoise wave near the shore",
    "a guitarist plays on a dimly lit stage with red lights",
    "a sleek car drives through a neon city street at night",
)


def generate_corpus(folder: Path) -> tuple[Path, Path]:
    """Raw videos of several sizes and scene structures, with a metadata CSV."""
    videos = folder / "videos"
    rows = []
    sizes = ((1280, 720), (1920, 1080), (1280, 720), (640, 360), (1280, 720), (1920, 1080))
    for i, ((width, height), caption) in enumerate(zip(sizes, CAPTIONS)):
        name = f"video_{i:02d}.mp4"
        scenes = (48 + 8 * i, 36, 60 - 4 * i, 12)[: 2 + i % 3]
        write_scene_video(videos / name, scenes, width, height, 24, seed=i)
        rows.append({"video": name, "caption": caption, "category": CATEGORIES[i], "source_dataset": "vimeo25m"})
    rows[4]["caption"] = "two words"  # under the paper's 3-word minimum: its clips are rejected
    (videos / "broken.mp4").write_bytes(b"this is not a video" * 50)
    (videos / "empty.mp4").write_bytes(b"")
    metadata = folder / "metadata.csv"
    with open(metadata, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["video", "caption", "category", "source_dataset"])
        writer.writeheader()
        writer.writerows(rows)
    return videos, metadata


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="demo_output")
    args = parser.parse_args()
    root = Path(args.workdir).resolve()
    # The demo trains on CPU. diffusers' model saving imports accelerate, which imports DeepSpeed:
    # name its accelerator rather than have it print its auto-detection warning.
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if root.exists():
        shutil.rmtree(root)
    print(f"[demo] generating raw videos under {root / 'raw'}")
    videos, metadata = generate_corpus(root / "raw")

    curated = root / "curated"
    connect(None, log_to_driver=False)
    print(f"[demo] curating on the embedded local Ray → {curated}")
    record = run_curation(
        CurationRequest(inputs=(str(videos),), out=str(curated), metadata=str(metadata), config=CurationConfig())
    )
    counts = record["counts"]
    print(
        f"[demo] {counts['inputs']} inputs, {counts['clips_detected']} clips detected, "
        f"{counts['clips_kept']} kept, {counts['clips_rejected'] + counts['inputs_rejected']} rejected"
    )
    report = root / "report"
    print(f"[demo] dataset statistics → {report}")
    if lavie(["stats", str(curated), "--out", str(report), "--label", "demo"]) != 0:
        raise SystemExit("[demo] lavie stats failed")

    print(f"[demo] training a tiny base model on the curated clips and generated images → {root / 'runs'}")
    prepare_training_inputs(root)
    if lavie(["train", "tiny-cpu", "--root", str(root)]) != 0:
        raise SystemExit("[demo] lavie train failed")
    export = root / "runs" / "tiny-cpu" / "export"

    cascade = root / "cascade"
    print(f"[demo] assembling a cascade folder from the trained model → {cascade}")
    if lavie(["cascade", "assemble", "--out", str(cascade), "--sd", str(root / "tiny-sd"), "--base", str(export)]) != 0:
        raise SystemExit("[demo] lavie cascade assemble failed")
    generated = root / "generated"
    print(f"[demo] generating a video from the trained model → {generated}")
    if lavie(["generate", "--models", str(cascade), "--prompt", CAPTIONS[0], "--stages", "base", "--num-frames", "8",
              "--height", "64", "--width", "64", "--steps", "25", "--out", str(generated)]) != 0:  # fmt: skip
        raise SystemExit("[demo] lavie generate failed")
    video = next((generated / "videos").glob("*.mp4"))

    print("[demo] outputs:")
    print(f"  clip manifest     {curated / 'clips'}")
    print(f"  rejects           {curated / 'rejects'}")
    print(f"  run record        {curated / 'run.json'}")
    print(f"  stats report      {report / 'report.html'} (example clips beside every chart)")
    print(f"  clip index        {report / 'clips.html'}")
    print(f"  stats numbers     {report / 'stats.json'}")
    print(f"  training run      {root / 'runs' / 'tiny-cpu'} (checkpoints; logs/ holds metrics JSON lines and TensorBoard events)")
    print(f"  trained model     {export / 'raw'} and {export / 'ema'} (cascade.models folders)")
    print(f"  cascade folder    {cascade}")
    print(f"  gallery           {generated / 'index.html'}")
    print(f"  generated video   {video}")


if __name__ == "__main__":
    main()
