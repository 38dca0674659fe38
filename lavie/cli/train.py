"""`lavie train`: train a network of the cascade (``model.kind``), DeepSpeed ZeRO on Ray Train.

    lavie train CONFIG.yaml [--set KEY=VALUE ...] [--root DIR] [--address ADDR] [--resume]
    lavie train CONFIG.yaml --export-only [--checkpoint URI]
    lavie train CONFIG.yaml --precompute-latents

CONFIG is a YAML file, or the name of a config shipped in training/configs (``tiny-cpu``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lavie.cli.options import add_address
from lavie.core.errors import UserError
from ray_jobs.cluster import connect


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a network of the cascade (DeepSpeed ZeRO on Ray Train)",
        description="Train on clip and image manifests with the curriculum mix; checkpoints, metrics and the "
        "exported model land in run.storage_path/run.name. Bad config, manifests or weights fail before any "
        "worker starts.",
    )
    p.add_argument("config", metavar="CONFIG", help="YAML config, or the name of a packaged one (tiny-cpu)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a dotted config key, VALUE parsed as YAML (e.g. run.max_steps=10, data.sources.0.manifest=DIR)",
    )  # fmt: skip
    p.add_argument("--root", help="directory that relative paths in the config are resolved against (default: cwd)")
    add_address(p)
    p.add_argument("--resume", action="store_true", help="continue the run named in the config from its latest checkpoint")
    p.add_argument("--export-only", action="store_true", help="only consolidate and export a checkpoint of the run")
    p.add_argument("--checkpoint", help="with --export-only: the checkpoint URI (default: the run's latest)")
    p.add_argument(
        "--precompute-latents", action="store_true",
        help="only encode every clip window and image of the sources into loader.latent_cache (a Ray Data job)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from training.config import load_train_config, packaged_config

    path = Path(args.config)
    if not path.exists():
        packaged = packaged_config(args.config)
        if packaged is None:
            raise UserError(f"config {args.config}: no such file (nor a packaged config of that name)")
        path = packaged
    config = load_train_config(path, args.overrides, root=args.root)
    if args.checkpoint and not args.export_only:
        raise UserError("--checkpoint only goes with --export-only")
    if args.precompute_latents and (args.export_only or args.resume):
        raise UserError("--precompute-latents goes with neither --export-only nor --resume")
    join_cluster = lambda: connect(args.address)  # noqa: E731 - called once the pre-flight has passed
    if args.precompute_latents:
        from training.precompute import precompute_latents

        precompute_latents(config, connect=join_cluster, quiet=args.quiet)
        return 0
    if args.export_only:
        from training.launcher import export_run

        export_run(config, args.checkpoint, connect=join_cluster, quiet=args.quiet)
        return 0
    from training.launcher import train

    result = train(config, connect=join_cluster, resume=args.resume, quiet=args.quiet)
    if not args.quiet:
        print(f"[train] done: step {result.step}, run folder {result.run_uri}")
        if result.export_uri:
            print(f"[train] model: {result.export_uri}/raw and {result.export_uri}/ema (cascade.models folders)")
    return 0
