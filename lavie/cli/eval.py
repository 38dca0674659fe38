"""``lavie eval fvd|clipsim|ucf101|msrvtt``: measure video sets, or a cascade on the paper's benchmarks (section 5.4)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lavie.cli.options import add_address, add_storage_option
from lavie.core.storage import join, parse_storage_options
from ray_jobs.cluster import connect


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="measure video sets or a cascade: FVD (UCF-101 protocol) and CLIPSIM (MSR-VTT protocol)",
        description="Compute the paper's metrics over video sets (folders of videos, `lavie generate` outputs or clip "
        "manifests), or generate a cascade's videos for the paper's benchmarks and measure them, on Ray. Each writes "
        "OUT/result.json (the metric, protocol, counts, versions, checkpoint hash) and OUT/report.html (the metric "
        "beside the paper's table, sample frames). A re-run into the same OUT reuses the videos and per-video work "
        "already done.",
    )
    metrics = parser.add_subparsers(dest="metric", required=True, metavar="METRIC")

    fvd = metrics.add_parser(
        "fvd",
        help="Frechet video distance of FAKE against REAL (I3D features)",
        description="FVD with the TATS/LaVie protocol: the first 16 frames of each video; generated (FAKE) frames "
        "centre-cropped to 270/320 of their short side (270x270 of 320x512), real frames to their largest centred "
        "square; both resized to 224x224; I3D Kinetics-400 logits averaged over time; Frechet distance in float64. "
        "A state-dict I3D computes as VideoGPT, TATS and cd-fvd do (batch-norm eps 1e-5). With --videomae, also "
        "the content-debiased FVD on VideoMAE-v2 features (cd-fvd). REAL's statistics are cached (--stats-cache).",
    )
    fvd.add_argument("real", metavar="REAL", help="folder of real videos or clip manifest (e.g. UCF-101)")
    fvd.add_argument("fake", metavar="FAKE", help="folder of generated videos, `lavie generate` output or clip manifest")
    _add_fvd_options(fvd)
    _add_common(fvd)
    fvd.set_defaults(handler=run_fvd)

    clipsim = metrics.add_parser(
        "clipsim",
        help="CLIP text-video similarity of VIDEOS with their CAPTIONS",
        description="CLIPSIM with the MSR-VTT protocol: per-frame cosine similarity of the CLIP image and text "
        "embeddings, averaged over frames, then over videos, reported as a raw cosine.",
    )
    clipsim.add_argument("videos", metavar="VIDEOS", help="folder of videos or clip manifest")
    clipsim.add_argument("captions", metavar="CAPTIONS",
                         help="CSV/JSONL (columns video, caption) or a manifest with source_uri and caption")  # fmt: skip
    _add_clip_options(clipsim)
    _add_common(clipsim)
    clipsim.set_defaults(handler=run_clipsim)

    ucf101 = metrics.add_parser(
        "ucf101",
        help="zero-shot UCF-101 FVD of a cascade's base model (paper Table 1)",
        description="Generate PER_CLASS videos (16x320x512, base model) for each UCF-101 class name of REAL as the "
        "prompt (CamelCase split into words), through the Ray batch generation, then FVD against REAL. The "
        "paper: 101 classes x 100 = 10,100 videos, FVD 526.30.",
    )
    ucf101.add_argument("--real", required=True, metavar="UCF101", help="UCF-101 videos (folder or clip manifest)")
    ucf101.add_argument("--models", required=True, metavar="CASCADE", help="cascade folder (lavie cascade assemble)")
    ucf101.add_argument("--per-class", type=int, default=100, metavar="N", help="samples per class (default 100)")
    ucf101.add_argument("--classes", metavar="A,B,...", help="only these classes (and only their real videos)")
    ucf101.add_argument("--seed", type=int, default=0, help="seed of the first sample; consecutive after (default 0)")
    _add_fvd_options(ucf101)
    _add_generation_options(ucf101)
    _add_common(ucf101)
    ucf101.set_defaults(handler=run_ucf101)

    msrvtt = metrics.add_parser(
        "msrvtt",
        help="zero-shot MSR-VTT CLIPSIM of a cascade's base model (paper Table 2)",
        description="Draw one caption per MSR-VTT test video (seeded), generate a video for each (16x320x512, base "
        "model) through the Ray batch generation, then CLIPSIM of the videos with their captions. The paper: 2,990 "
        "videos, CLIPSIM 0.2949.",
    )
    msrvtt.add_argument("--captions", required=True, metavar="FILE",
                        help="MSR-VTT test_videodatainfo.json, or CSV/JSONL with columns video, caption")  # fmt: skip
    msrvtt.add_argument("--models", required=True, metavar="CASCADE", help="cascade folder (lavie cascade assemble)")
    msrvtt.add_argument("--seed", type=int, default=0, help="seed of the caption draw and of the first sample (default 0)")
    msrvtt.add_argument("--videos", type=int, metavar="N", help="only the first N test videos by id (default: all)")
    _add_clip_options(msrvtt)
    _add_generation_options(msrvtt)
    _add_common(msrvtt)
    msrvtt.set_defaults(handler=run_msrvtt)


def _add_fvd_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--i3d", metavar="CHECKPOINT",
                        help="I3D weights: i3d_pretrained_400.pt (state dict) or a TorchScript file")  # fmt: skip
    parser.add_argument("--videomae", metavar="CHECKPOINT",
                        help="VideoMAE-v2 weights (cd-fvd's vit_g_hybrid_pt_1200e_ssv2_ft.pth): content-debiased FVD")  # fmt: skip
    parser.add_argument("--features", metavar="i3d|videomae|i3d,videomae",
                        help="which FVDs to compute (default: one per checkpoint given; the I3D one is the headline)")  # fmt: skip
    parser.add_argument("--i3d-bn-eps", type=float, metavar="EPS",
                        help="the I3D's batch-norm eps (default: the checkpoint's lineage, 1e-5 for a state dict as "
                        "VideoGPT/TATS/cd-fvd; 1e-3 reproduces the TF-hub original)")  # fmt: skip
    parser.add_argument("--samples", type=int, metavar="N", help="videos drawn from each set (seeded; default: all)")
    parser.add_argument("--protocol", metavar="FILE", help="YAML/JSON FVD protocol overrides (num_frames, real_crop, fake_crop, seed, i3d_bn_eps)")
    parser.add_argument("--stats-cache", metavar="DIR", default="default",
                        help="folder of cached real-set statistics (default: ~/.cache/lavie/fvd-stats; 'none' disables)")  # fmt: skip


def _add_clip_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clip-model", required=True, metavar="NAME|CONFIG.json",
                        help="open_clip model name (the paper: ViT-B-32) or model-config JSON")  # fmt: skip
    parser.add_argument("--clip-checkpoint", required=True, metavar="FILE", help="open_clip weights (local file)")
    parser.add_argument("--max-frames", type=int, metavar="N", help="N evenly spaced frames per video (default: all)")


def _add_generation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num-frames", type=int, default=16, metavar="N", help="frames per video (the paper: 16)")
    parser.add_argument("--height", type=int, default=320, help="video height (the paper: 320)")
    parser.add_argument("--width", type=int, default=512, help="video width (the paper: 512)")
    parser.add_argument("--steps", type=int, metavar="N", help="sampling steps (default: the release's)")
    parser.add_argument("--guidance", type=float, metavar="G", help="guidance scale (default: the release's)")
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="generation workers (default 1)")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="folder (or URL) for result.json, report.html, work/")
    parser.add_argument("--batch-size", type=int, default=4, metavar="N", help="videos per model call (default 4)")
    parser.add_argument("--actors", type=int, metavar="N", help="model actors (default: one per GPU, else 1)")
    add_address(parser)
    add_storage_option(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[str, int, int], None]]:
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("videos"), TimeElapsedColumn(),
        console=console, disable=quiet, transient=True,
    ) as progress:  # fmt: skip
        tasks: dict[str, int] = {}

        def update(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], completed=done, total=total)

        yield update


def _print_result(record: dict, out: str) -> None:
    from evaluation.report import REPORT_FILE, RESULT_FILE, format_value

    metric = record["metric"]
    values = record.get("fvd") or {}
    print(f"lavie eval {metric}: {format_value(metric, record['value'])}" + ("" if record.get("features", "i3d") == "i3d" else f" ({record['features']})"))
    for name, value in values.items():
        if name != record.get("features"):
            print(f"lavie eval {metric} ({name}): {format_value(metric, value)}")
    extra = {f"{metric}_{name}": value for name, value in values.items() if name != record.get("features")}
    print(json.dumps({metric: record["value"], **extra, "result": join(out, RESULT_FILE), "report": join(out, REPORT_FILE)}))


def _shared(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords every evaluation API takes, from the common options."""
    from evaluation.features import PoolOptions
    from lavie.core.config import validate

    return {
        "out": args.out,
        "pool": validate(PoolOptions, {"batch_size": args.batch_size, "actors": args.actors}, "options"),
        "storage_options": parse_storage_options(args.storage_option) or None,
        "connect": lambda: connect(args.address, log_to_driver=False),
    }


def _fvd_protocol(args: argparse.Namespace):
    from evaluation.fvd import FvdProtocol
    from lavie.core.config import load_config

    overrides = {name: value for name, value in (("samples", args.samples), ("i3d_bn_eps", args.i3d_bn_eps)) if value is not None}
    where = args.protocol or ("--samples" if args.samples is not None else "--i3d-bn-eps")
    return load_config(FvdProtocol, args.protocol, overrides, where=where)


def _fvd_keywords(args: argparse.Namespace) -> dict[str, Any]:
    features = [name.strip() for name in args.features.split(",") if name.strip()] if args.features else None
    return {"i3d": args.i3d, "videomae": args.videomae, "features": features,
            "stats_cache": None if args.stats_cache == "none" else args.stats_cache}  # fmt: skip


def _clipsim_protocol(args: argparse.Namespace):
    from evaluation.clipsim import ClipsimProtocol
    from lavie.core.config import validate

    return validate(ClipsimProtocol, {"max_frames": args.max_frames}, "--max-frames", root="max_frames")


def _generation(args: argparse.Namespace):
    from evaluation.generation import GenerationOptions
    from lavie.core.config import validate

    fields = ("num_frames", "height", "width", "steps", "guidance", "workers")
    return validate(GenerationOptions, {f: getattr(args, f) for f in fields if getattr(args, f) is not None}, "options")


def run_fvd(args: argparse.Namespace) -> int:
    from evaluation.fvd import compute_fvd

    with _progress(args.quiet) as progress:
        record = compute_fvd(args.real, args.fake, protocol=_fvd_protocol(args), **_fvd_keywords(args), **_shared(args),
                             on_progress=progress)  # fmt: skip
    _print_result(record, args.out)
    return 0


def run_clipsim(args: argparse.Namespace) -> int:
    from evaluation.clipsim import compute_clipsim

    with _progress(args.quiet) as progress:
        record = compute_clipsim(
            args.videos, args.captions, clip_model=args.clip_model, clip_checkpoint=args.clip_checkpoint,
            protocol=_clipsim_protocol(args), **_shared(args), on_progress=lambda done, total: progress("clipsim", done, total),
        )  # fmt: skip
    _print_result(record, args.out)
    return 0


def run_ucf101(args: argparse.Namespace) -> int:
    from evaluation.ucf101 import Ucf101Protocol, measure_ucf101
    from lavie.core.config import validate

    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    protocol = validate(Ucf101Protocol, {"per_class": args.per_class, "classes": classes, "seed": args.seed}, "options")
    with _progress(args.quiet) as progress:
        record = measure_ucf101(
            args.real, args.models, protocol=protocol, fvd=_fvd_protocol(args), **_fvd_keywords(args),
            generation=_generation(args), **_shared(args), on_progress=progress,
        )  # fmt: skip
    _print_result(record, args.out)
    return 0


def run_msrvtt(args: argparse.Namespace) -> int:
    from evaluation.msrvtt import MsrvttProtocol, measure_msrvtt
    from lavie.core.config import validate

    protocol = validate(MsrvttProtocol, {"seed": args.seed, "videos": args.videos}, "options")
    with _progress(args.quiet) as progress:
        record = measure_msrvtt(
            args.captions, args.models, clip_model=args.clip_model, clip_checkpoint=args.clip_checkpoint, protocol=protocol,
            clipsim=_clipsim_protocol(args), generation=_generation(args), **_shared(args), on_progress=progress,
        )  # fmt: skip
    _print_result(record, args.out)
    return 0
