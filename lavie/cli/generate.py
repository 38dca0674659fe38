"""`lavie generate`: prompts → videos with the cascade; `lavie cascade assemble`: build a cascade folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from cascade.batch import PromptItem, generate_batch, read_prompts
from cascade.pipelines.folder import assemble_cascade
from cascade.pipelines.settings import GenerationSettings
from lavie.cli.options import add_address
from lavie.core.config import read_mapping
from lavie.core.errors import UserError, config_error

#: ``--flag`` → GenerationSettings field, for the settings given on the command line.
SETTING_FLAGS = {
    "stages": "stages", "mode": "mode", "segments": "num_segments", "num_frames": "num_frames",
    "height": "height", "width": "width", "negative_prompt": "negative_prompt", "steps": "base_steps",
    "guidance": "base_guidance", "scheduler": "base_scheduler", "interp_steps": "interpolation_steps",
    "interp_guidance": "interpolation_guidance", "vsr_steps": "vsr_steps", "vsr_guidance": "vsr_guidance",
    "noise_level": "noise_level", "vsr_chunk": "vsr_chunk_frames", "vsr_overlap": "vsr_chunk_overlap",
    "vsr_tile": "vsr_tile", "vsr_tile_overlap": "vsr_tile_overlap", "decode_chunk_size": "decode_chunk_size",
    "lora": "lora", "lora_scale": "lora_scale", "fps": "fps", "dtype": "dtype", "offload": "offload",
}  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_generate(subparsers)
    _register_cascade(subparsers)


def _register_generate(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate",
        help="generate videos (or images) from prompts with a cascade folder",
        description="Run the cascade (base → interpolation → VSR) on one prompt or a prompt file. Writes "
        "OUT/videos/<id>.mp4 (H.264; 8 fps after the base, 24 after interpolation), OUT/manifest.parquet "
        "(prompt, seed, settings, path, seconds per stage) and OUT/index.html (a gallery). A re-run skips "
        "finished prompts. Defaults are the LaVie release's sampling settings.",
    )
    p.add_argument("--models", required=True, metavar="CASCADE", help="cascade folder (lavie cascade assemble)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="one prompt")
    source.add_argument("--prompts", metavar="FILE", help="prompt file: one per line, or .jsonl with prompt and seed")
    p.add_argument("--video", metavar="FILE", help="input video for runs that start after the base (--stages interp or vsr)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--seed", type=int, default=0, help="seed of --prompt; the first seed of a plain prompt file")
    p.add_argument("--stages", default=None, help="comma-separated: base,interp,vsr (default: base)")
    p.add_argument("--mode", choices=["video", "image", "long"], default=None,
                   help="video (default), image (one frame, a PNG) or long (--segments segments)")  # fmt: skip
    p.add_argument("--segments", type=int, default=None, help="long mode: number of segments (default 2)")
    p.add_argument("--num-frames", type=int, default=None, help="key frames of the base (default 16)")
    p.add_argument("--height", type=int, default=None, help="base height (default 320)")
    p.add_argument("--width", type=int, default=None, help="base width (default 512)")
    p.add_argument("--negative-prompt", default=None)
    p.add_argument("--steps", type=int, default=None, help="base steps (default 50)")
    p.add_argument("--guidance", type=float, default=None, help="base guidance (default 7.5)")
    p.add_argument("--scheduler", choices=["ddpm", "ddim", "euler"], default=None, help="base sampler (default ddpm)")
    p.add_argument("--interp-steps", type=int, default=None, help="interpolation steps (default 50)")
    p.add_argument("--interp-guidance", type=float, default=None, help="interpolation guidance (default 4)")
    p.add_argument("--vsr-steps", type=int, default=None, help="VSR steps (default 50)")
    p.add_argument("--vsr-guidance", type=float, default=None, help="VSR guidance (default 5)")
    p.add_argument("--noise-level", type=int, default=None, help="VSR noise level (default 50)")
    p.add_argument("--vsr-chunk", type=int, default=None, help="VSR frames per chunk (default 8)")
    p.add_argument("--vsr-overlap", type=int, default=None, help="VSR frames shared by neighbouring chunks (default 0)")
    p.add_argument("--vsr-tile", type=int, default=None, help="VSR spatial tile, in low-res pixels (default: none)")
    p.add_argument("--vsr-tile-overlap", type=int, default=None, help="VSR tile overlap in low-res pixels")
    p.add_argument("--decode-chunk-size", type=int, default=None, help="frames the VAE decodes at a time (default 8)")
    p.add_argument("--lora", default=None, metavar="PATH", help="spatial LoRA adapter for the base (save_spatial_lora)")
    p.add_argument("--lora-scale", type=float, default=None, help="adapter strength (default 1)")
    p.add_argument("--fps", type=float, default=None, help="frame rate of the written video")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default=None, help="default: bf16 on GPU, fp32 on CPU")
    p.add_argument("--offload", action="store_true", default=None, help="keep each stage on the GPU only while it runs")
    p.add_argument("--png", action="store_true", help="also write every frame as a PNG (OUT/frames/<id>/)")
    p.add_argument("--settings", metavar="FILE", help="a settings file (JSON or YAML); flags override it")
    add_address(p)
    p.add_argument("--workers", type=int, default=1, help="Ray actors, each holding the cascade (one GPU each)")
    p.add_argument("--device", default=None, help="without Ray: cuda, cuda:1 or cpu (default: cuda when present)")
    p.set_defaults(handler=run_generate)


def _register_cascade(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("cascade", help="build cascade folders")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser(
        "assemble",
        help="a cascade folder from lavie train exports and local SD 1.x / x4-upscaler folders",
        description="Each model is a lavie train export (its EMA weights when kept) or a cascade.models folder.",
    )
    a.add_argument("--out", required=True, metavar="DIR")
    a.add_argument("--sd", required=True, metavar="FOLDER", help="local Stable Diffusion 1.x folder")
    a.add_argument("--upscaler", metavar="FOLDER", help="local stable-diffusion-x4-upscaler folder (with --vsr)")
    for stage in ("base", "interpolation", "vsr", "long-video"):
        a.add_argument(f"--{stage}", metavar="MODEL", help=f"the {stage} model: a lavie train export or model folder")
    a.set_defaults(handler=run_assemble)


def settings_from(args: argparse.Namespace) -> GenerationSettings:
    values = read_mapping(args.settings, f"--settings {args.settings}") if args.settings else {}
    values.update({field: getattr(args, flag) for flag, field in SETTING_FLAGS.items() if getattr(args, flag) is not None})
    try:
        return GenerationSettings.model_validate(values)
    except ValidationError as exc:
        raise UserError(f"settings: {config_error(exc)}") from None


def run_generate(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.prompt is not None and not args.prompt.strip():
        raise UserError("--prompt is empty")
    items = [PromptItem(prompt=args.prompt, seed=args.seed)] if args.prompt is not None else read_prompts(args.prompts, args.seed)
    if args.video is not None:
        return _generate_from_video(args, settings, items)
    use_ray = args.address is not None
    if use_ray:
        from ray_jobs.cluster import connect

        connect(args.address, log_to_driver=False)
    total = len(items)
    done = [0]

    def progress(row: dict) -> None:
        done[0] += 1
        status = row["path"] if row["status"] == "ok" else f"failed: {row['error']}"
        print(f"[{done[0]}/{total}] {row['prompt'][:60]!r} seed {row['seed']}: {status}", file=sys.stderr, flush=True)

    result = generate_batch(args.models, items, args.out, settings, workers=args.workers, use_ray=use_ray,
                            png_frames=args.png, device=args.device, on_row=progress)  # fmt: skip
    print(json.dumps({"manifest": str(result.manifest), "gallery": str(Path(args.out) / "index.html"),
                      "generated": result.generated, "skipped": result.skipped, "failed": result.failed}))  # fmt: skip
    return 1 if result.failed else 0


def _generate_from_video(args: argparse.Namespace, settings: GenerationSettings, items: list[PromptItem]) -> int:
    """Interpolation or VSR of one existing video (in this process)."""
    import torch

    from cascade.files import write_mp4
    from cascade.pipelines.cascade import CascadePipeline
    from lavie.core.video import VideoReadError, open_video

    if len(items) != 1:
        raise UserError("--video takes one --prompt")
    if settings.starts_from_text:
        raise UserError("--video is for runs that start after the base: --stages interp[,vsr] or vsr")
    try:
        with open_video(args.video) as reader:
            input_fps = reader.fps
    except VideoReadError as exc:
        raise UserError(f"cannot read input video {exc}") from None
    pipeline = CascadePipeline.from_pretrained(args.models, settings, device=args.device)
    item = items[0]
    result = pipeline(item.prompt, settings, torch.Generator("cpu").manual_seed(item.seed), video=args.video)
    fps = settings.fps or (settings.output_fps() if "interpolation" in settings.stages else input_fps)
    path = write_mp4(result.frames[0], Path(args.out) / "videos" / f"{Path(args.video).stem}.{'-'.join(settings.stages)}.mp4", fps)
    print(json.dumps({"video": str(path), "frames": len(result.frames[0]), "fps": fps, "seconds": result.seconds}))
    return 0


def run_assemble(args: argparse.Namespace) -> int:
    out = assemble_cascade(args.out, sd=args.sd, upscaler=args.upscaler, base=args.base,
                           interpolation=args.interpolation, vsr=args.vsr, long_video=args.long_video)  # fmt: skip
    print(json.dumps({"cascade": str(out), "stages": json.loads((out / "model_index.json").read_text())["stages"]}))
    return 0
