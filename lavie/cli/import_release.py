"""`lavie import-release`: the published LaVie checkpoints as cascade.models folders or a cascade folder."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from cascade.models.release import RELEASE_STAGES, TRAINING_SCHEDULE, import_release
from cascade.pipelines import assemble_cascade
from lavie.core.errors import UserError

CASCADE = "cascade"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import-release",
        help="convert the published LaVie checkpoints (lavie_base.pt...) into models or a cascade folder",
        description="`lavie import-release STAGE CHECKPOINT --unet-config CONFIG_JSON --out FOLDER` converts one "
        "published checkpoint (STAGE: base, interpolation or vsr) into a cascade.models folder, strictly: every "
        "key is mapped or refused. CONFIG_JSON is the diffusers unet/config.json of the 2D model the stage was "
        "inflated from (SD 1.4's for base and interpolation, the x4 upscaler's for vsr). "
        "`lavie import-release cascade --base CKPT [--interpolation CKPT] [--vsr CKPT] --sd SD14 [--upscaler X4] "
        "--out FOLDER` imports the given checkpoints and assembles a cascade folder for `lavie generate`.",
    )
    p.add_argument("stage", choices=[*RELEASE_STAGES, CASCADE], metavar="STAGE",
                   help=f"{', '.join(RELEASE_STAGES)}, or {CASCADE} to assemble a cascade folder")  # fmt: skip
    p.add_argument("checkpoint", nargs="?", metavar="CHECKPOINT", help="the published .pt file (one-stage form)")
    p.add_argument("--unet-config", metavar="CONFIG_JSON", help="the 2D UNet's config.json (one-stage form)")
    p.add_argument("--out", required=True, metavar="FOLDER", help="output folder (must not exist)")
    for stage in RELEASE_STAGES:
        p.add_argument(f"--{stage}", metavar="CHECKPOINT", help=f"cascade form: lavie_{stage}.pt")
    p.add_argument("--sd", metavar="SD_FOLDER", help="cascade form: local Stable Diffusion 1.4 folder")
    p.add_argument("--upscaler", metavar="X4_FOLDER", help="cascade form: local x4 upscaler folder (with --vsr)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.stage == CASCADE:
        out = _import_cascade(args)
    else:
        _refuse_other_form(args, {f"--{name}": getattr(args, name) for name in (*RELEASE_STAGES, "sd", "upscaler")})
        if args.checkpoint is None or args.unet_config is None:
            raise UserError(f"import-release {args.stage} needs CHECKPOINT and --unet-config CONFIG_JSON")
        out = import_release(args.stage, args.checkpoint, args.unet_config, args.out)
    print(f"[import-release] wrote {out}")
    return 0


def _import_cascade(args: argparse.Namespace) -> Path:
    """Import each given checkpoint beside ``--out``, then assemble the cascade folder from them."""
    _refuse_other_form(args, {"CHECKPOINT": args.checkpoint, "--unet-config": args.unet_config})
    checkpoints = {stage: getattr(args, stage) for stage in RELEASE_STAGES if getattr(args, stage)}
    if not checkpoints or args.sd is None:
        raise UserError(f"import-release {CASCADE} needs --sd and at least one of --base, --interpolation, --vsr")
    if "vsr" in checkpoints and args.upscaler is None:
        raise UserError(f"import-release {CASCADE}: --vsr needs --upscaler, the x4 upscaler folder")
    out = Path(args.out)
    if out.exists():
        raise UserError(f"{out}: already exists; choose a new output folder")
    staging = out.with_name(f".{out.name}.release-models")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        unet_configs = {"base": args.sd, "interpolation": args.sd, "vsr": args.upscaler}
        models = {
            stage: import_release(stage, checkpoint, Path(unet_configs[stage]) / "unet", staging / stage)
            for stage, checkpoint in checkpoints.items()
        }
        return assemble_cascade(out, sd=args.sd, upscaler=args.upscaler, base_scheduler=TRAINING_SCHEDULE,
                                sources={stage: str(path) for stage, path in checkpoints.items()}, **models)  # fmt: skip
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _refuse_other_form(args: argparse.Namespace, arguments: dict[str, str | None]) -> None:
    given = [name for name, value in arguments.items() if value is not None]
    if given:
        raise UserError(f"import-release {args.stage}: {given[0]} belongs to the other form of the command")
