"""One GPU check: every GPU figure of BENCHMARKS.md in one run on one GPU, within 8 minutes on an H200.

    python benchmarks/gpu_check.py --out DIR [--dry-run] [--sections train,sampling,...] [--budget SECONDS]

Writes ``DIR/gpu_check.json`` (every figure, the settings it was measured with, and each section's
status) and ``DIR/gpu_check.md`` (a table ready for BENCHMARKS.md). The sections, each in its own
process with its own time budget, so that one that fails or runs out of time is recorded with its
one-line reason and the others still run:

* ``i3d``: I3D videos/s (``bench_eval.gpu_throughput``, fp32, batch sizes 8/16/32);
* ``scorer``: curation's aesthetic + CLIP scorer (``curation.scoring.ClipScorer``, open_clip
  ViT-L-14 and the LAION MLP, random weights), clips/s at the scoring stage's batch and frame count;
* ``zero3``: a ZeRO-3 step with 2 Ray Train workers sharing the one GPU, when the GPU allows it
  (else the reason);
* ``train``: the base model's training step (``bench_trainer.run_gpu``: the trainer's DeepSpeed
  engine, ZeRO-2, bf16, 16 frames + 4 images at 320x512 as in ``training/configs/base-320x512.yaml``),
  step time, the FLOPs of one step counted with ``torch.utils.flop_counter``, and MFU against the
  datasheet's dense bf16 peak and against a bf16 matrix product measured on the same GPU;
* ``models``: the paper-size cascade folder of random models (``bench_cascade.build_cascade``:
  SD 1.x and x4-upscaler UNet configs, SD's VAE, SD-size text encoders), which the next three use;
* ``sampling``: base sampling, 50 DDPM steps with classifier-free guidance at 16x320x512;
* ``cascade``, ``cascade_offload``: the whole cascade to 61x1280x2048, without and with model
  offload (``bench_cascade.worker``): seconds per stage and ``torch.cuda.max_memory_allocated``, at
  ``--cascade-steps`` steps per stage (default 5: at the release's 50 the whole cascade did not end
  within 150 s on the first H200 run; peak memory does not depend on the step count).

The sections run in the order below; ``zero3`` runs last and gets what is left of ``--budget``.
A dry run may run ``--jobs N`` sections at once (the cascade sections still wait for ``models``).

Nothing is downloaded: every model is built from the packaged configs with random weights.
``--dry-run`` runs every section at tiny sizes on the CPU (the test suite runs it, so that the
script keeps working between the rare runs on a GPU). Without a GPU and without ``--dry-run`` the
script says so in one line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
for _path in (str(ROOT), str(BENCHMARKS)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

#: DeepSpeed runs torch's fused AdamW (no CUDA extension to compile on the GPU machine).
TORCH_ADAM = {"optimizer": {"params": {"torch_adam": True, "fused": True}}}
#: The packaged config whose shape the training section measures.
BASE_CONFIG = ROOT / "training" / "configs" / "base-320x512.yaml"
#: Dense bf16 peak of the H100/H200 SXM datasheet (TFLOP/s), the MFU denominator.
DATASHEET_BF16_TFLOPS = 989.0


@dataclass(frozen=True)
class Context:
    """What a section runs with: the device, the sizes (dry run or not), where to work."""

    dry_run: bool
    work: Path
    ray_address: str | None
    cascade_steps: int = 5

    @property
    def device(self) -> str:
        return "cpu" if self.dry_run else "cuda"

    @property
    def cascade(self) -> Path:
        return self.work / "models" / "cascade"

    @property
    def size(self) -> str:
        """bench_cascade's size of the random models."""
        return "tiny" if self.dry_run else "paper"


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    run: Callable[[Context], dict[str, Any]]
    budget_s: float  # on the GPU
    dry_budget_s: float
    needs: tuple[str, ...] = ()  # importable packages
    needs_models: bool = False
    headline: Callable[[dict[str, Any]], str] = lambda figures: ""


# --------------------------------------------------------------------------- measurements
def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def matmul_tflops(device: str, n: int, repeats: int) -> float:
    """bf16 ``n x n x n`` matrix products per second on random data, in TFLOP/s (the ceiling MFU is
    also measured against)."""
    import torch

    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, generator=g, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, generator=g, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12


def _base_shape() -> dict[str, int]:
    from lavie.core.config import read_mapping

    data = read_mapping(BASE_CONFIG)["data"]
    return {key: int(data[key]) for key in ("num_frames", "images_per_sample", "height", "width")}


def _trainer_args(ctx: Context, zero_stage: int, world_size: int = 1) -> argparse.Namespace:
    """bench_trainer's ``--gpu`` arguments: the packaged base config's shape, or tiny on a dry run."""
    shape = _base_shape()
    if (shape["height"], shape["width"]) != (320, 512):  # bench_trainer.run_gpu's non-square size
        raise RuntimeError(f"{BASE_CONFIG.name}: {shape['height']}x{shape['width']}, bench_trainer measures 320x512")
    dry = ctx.dry_run
    return argparse.Namespace(
        device="cpu" if dry else "cuda:0", unet="tiny" if dry else "sd1", zero_stage=zero_stage, checkpointing=False, batch=1,
        frames=2 if dry else shape["num_frames"], images=1 if dry else shape["images_per_sample"],
        pixels=16 if dry else None, steps=1 if dry else 10, warmup=0 if dry else 3,
        peak_tflops=DATASHEET_BF16_TFLOPS, ds_config=json.dumps({**TORCH_ADAM, "train_batch_size": world_size}),
    )  # fmt: skip


def run_train(ctx: Context) -> dict[str, Any]:
    import torch
    from bench_trainer import run_gpu

    if ctx.dry_run:
        torch.set_num_threads(2)
    result = run_gpu(_trainer_args(ctx, zero_stage=2))
    measured = matmul_tflops(ctx.device, 256 if ctx.dry_run else 8192, 2 if ctx.dry_run else 20)
    result["matmul_bf16_tflops_measured"] = round(measured, 1)
    result["mfu_vs_measured_matmul_pct"] = round(result["achieved_tflops"] / measured * 100, 1)
    result["flops_counted"] = "torch.utils.flop_counter: matmul, conv and attention FLOPs of forward + backward"
    return result


def _train_headline(f: dict[str, Any]) -> str:
    return (f"{f['step_ms']:,.0f} ms/step, {f['samples_per_sec']} samples/s, {f['model_tflop_per_step']} TFLOP/step, "
            f"MFU {f['mfu_pct']} % of {f['peak_tflops']:.0f} (datasheet), {f['mfu_vs_measured_matmul_pct']} % of "
            f"{f['matmul_bf16_tflops_measured']} (measured bf16 matmul); peak {f['max_memory_gib']} GiB")  # fmt: skip


def _zero3_loop(config: dict[str, Any]) -> None:
    """A Ray Train worker: bench_trainer's engine step with ZeRO-3 (torch.distributed is already
    set up by Ray Train; DeepSpeed joins its process group)."""
    sys.path[:0] = [p for p in config["paths"] if p not in sys.path]
    import ray.train
    from bench_trainer import run_gpu

    if config["args"]["device"] == "cpu":
        import torch

        torch.set_num_threads(1)
    result = run_gpu(argparse.Namespace(**config["args"]))
    context = ray.train.get_context()
    if context.get_world_rank() == 0:  # the driver reads rank 0's figures from the shared scratch folder
        result.update(mode=f"{context.get_world_size()} Ray Train workers, trainer engine, bf16",
                      world_size=context.get_world_size())  # fmt: skip
        Path(config["result"]).write_text(json.dumps(result))
    ray.train.report({"step_ms": result["step_ms"]})


def run_zero3(ctx: Context) -> dict[str, Any]:
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from ray_jobs.cluster import connect

    if ctx.ray_address is None:
        connect(None, include_dashboard=False)
    else:
        connect(ctx.ray_address)
    gpu = ctx.device == "cuda"
    if gpu and ray.cluster_resources().get("GPU", 0) < 1:
        raise RuntimeError("the Ray cluster has no GPU")
    args = vars(_trainer_args(ctx, zero_stage=3, world_size=2))
    result_file = ctx.work / "zero3-rank0.json"
    result_file.unlink(missing_ok=True)
    trainer = TorchTrainer(
        _zero3_loop,
        train_loop_config={"args": args, "paths": [str(ROOT), str(BENCHMARKS)], "result": str(result_file)},
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=2, use_gpu=gpu,
                                     resources_per_worker={"CPU": 1, "GPU": 0.5} if gpu else {"CPU": 1}),  # fmt: skip
        run_config=RunConfig(name=f"gpu-check-zero3-{os.getpid()}", storage_path=str(ctx.work / "ray-train"),
                             failure_config=FailureConfig(max_failures=0)),  # fmt: skip
    )
    try:
        result = trainer.fit()
    except Exception as exc:
        text = _error_text(exc)
        if gpu and ("Duplicate GPU" in text or "ncclInvalidUsage" in text):
            raise NotPossible("this GPU does not allow it: NCCL refuses two ranks on one GPU (Duplicate GPU detected)") from None
        raise
    if not result_file.exists():
        raise RuntimeError(f"training ended without rank 0's figures ({result.error or 'no error'})")
    return {**json.loads(result_file.read_text()), "workers": 2, "gpu_per_worker": 0.5 if gpu else 0}


def _error_text(exc: BaseException) -> str:
    parts, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


def _zero3_headline(f: dict[str, Any]) -> str:
    return f"{f['step_ms']:,.0f} ms/step with {f['world_size']} workers on one GPU; peak {f['max_memory_gib']} GiB per worker"


def run_models(ctx: Context) -> dict[str, Any]:
    import torch
    from bench_cascade import SIZES, build_cascade

    if ctx.dry_run:
        torch.set_num_threads(2)
    folder = ctx.cascade.parent
    if folder.exists():
        shutil.rmtree(folder)
    cascade = build_cascade(ctx.size, folder)
    if cascade != ctx.cascade:
        raise RuntimeError(f"cascade folder written at {cascade}, expected {ctx.cascade}")
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    spec = SIZES[ctx.size]
    return {"size": ctx.size, "bytes_on_disk": size, "base_unet": "SD 1.x config" if ctx.size == "paper" else "tiny",
            "vsr_unet": "x4 upscaler config" if ctx.size == "paper" else "tiny",
            "base_video": f"{spec['frames']}x{spec['height']}x{spec['width']}"}  # fmt: skip


def _cascade_worker(ctx: Context, stage: str, overrides: dict[str, Any], steps: int) -> dict[str, Any]:
    """bench_cascade's worker in this process, plus the absolute CUDA peak of the run (its own
    figure is the peak over the memory held before the run)."""
    import torch
    from bench_cascade import worker

    if ctx.dry_run:
        torch.set_num_threads(2)
    result = worker(ctx.cascade, ctx.size, stage, dict(overrides), steps, ctx.device)
    cuda = ctx.device == "cuda"
    out = {
        "seconds": round(result["seconds"], 2),
        "stage_seconds": {k: round(v, 2) for k, v in result.get("stage_seconds", {}).items()},
        "output": "x".join(str(n) for n in result["frames"][1:4]),
        "steps_per_stage": steps,
        "peak_gib_over_resident": round(result["peak_bytes"] / 2**30, 2) if cuda else None,
        "max_memory_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "peak_rss_growth_mib": None if cuda else round(result["peak_bytes"] / 2**20, 1),
    }
    return out


def run_sampling(ctx: Context) -> dict[str, Any]:
    settings = {"decode_chunk_size": 8, "base_scheduler": "ddpm"}
    if not ctx.dry_run:
        _cascade_worker(ctx, "base", settings, 2)  # warm-up: kernels, cuDNN, allocator
    out = _cascade_worker(ctx, "base", settings, 2 if ctx.dry_run else 50)
    return {**out, "scheduler": "DDPM", "guidance": 7.5, "seconds_per_video": out["seconds"]}


def _memory(f: dict[str, Any]) -> str:
    if f.get("max_memory_allocated_gib") is None:
        return f"peak RSS growth {f['peak_rss_growth_mib']} MiB"
    return f"max allocated {f['max_memory_allocated_gib']} GiB ({f['peak_gib_over_resident']} GiB over the resident models)"


def _sampling_headline(f: dict[str, Any]) -> str:
    return f"{f['seconds_per_video']} s/video ({f['steps_per_stage']} steps, CFG {f['guidance']}), {_memory(f)}"


def run_cascade(ctx: Context, offload: bool) -> dict[str, Any]:
    """The three stages with the release's settings except the step count (``--cascade-steps``,
    the same for each stage): peak memory does not depend on it, seconds do."""
    out = _cascade_worker(ctx, "cascade", {"offload": offload}, ctx.cascade_steps)
    return {**out, "offload": offload}


def _cascade_headline(f: dict[str, Any]) -> str:
    stages = ", ".join(f"{k} {v}" for k, v in f["stage_seconds"].items())
    return f"{f['seconds']} s to {f['output']} at {f['steps_per_stage']} steps per stage ({stages}), {_memory(f)}"


def run_i3d(ctx: Context) -> dict[str, Any]:
    import torch
    from bench_eval import gpu_throughput

    if ctx.dry_run:
        torch.set_num_threads(2)
    rows = gpu_throughput([1] if ctx.dry_run else [8, 16, 32], repeats=1 if ctx.dry_run else 5, device=ctx.device)
    best = max(rows, key=lambda row: row["videos_per_s"])
    return {"input": "16 frames of 320x512, centre crop 270, resized to 224, fp32",
            "batches": [{k: (round(v, 2) if isinstance(v, float) and v == v else None if isinstance(v, float) else v)
                         for k, v in row.items()} for row in rows],
            "videos_per_s": round(best["videos_per_s"], 1), "best_batch": best["batch"]}  # fmt: skip


def _i3d_headline(f: dict[str, Any]) -> str:
    per = ", ".join(f"batch {r['batch']}: {r['videos_per_s']}" for r in f["batches"])
    return f"{f['videos_per_s']} videos/s ({per})"


def run_scorer(ctx: Context) -> dict[str, Any]:
    """Curation's scorer on random weights: the default CLIP (ViT-L-14) and the aesthetic MLP over
    its embedding, at the scoring stage's default batch and frame count; frames at the CLIP input
    size, as the curation stores them."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    from curation.config import ScoringConfig
    from curation.scoring import AestheticPredictor, ClipScorer

    config = ScoringConfig()
    folder = ctx.work / "scorer"
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    if ctx.dry_run:
        from lavie.synthetic.tiny_clip import write_tiny_clip

        torch.set_num_threads(2)
        clip = write_tiny_clip(folder)
        clip_model, checkpoint, batch, repeats = clip["clip_model"], clip["clip_checkpoint"], 4, 2
    else:
        model = open_clip.create_model(config.clip_model, pretrained=None, load_weights=False)
        checkpoint = str(folder / "clip.safetensors")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, checkpoint)
        clip_model, batch, repeats = config.clip_model, config.batch_size, 10
        del model
    embed = open_clip.get_model_config(Path(clip_model).stem if clip_model.endswith(".json") else clip_model)["embed_dim"]
    torch.save(AestheticPredictor(embed).state_dict(), folder / "aesthetic.pth")
    scorer = ClipScorer(clip_model, checkpoint, str(folder / "aesthetic.pth"), device=ctx.device)
    k, side = len(config.frame_positions), scorer.image_size
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (batch, k, side, side, 3), generator=g, dtype=torch.uint8)
    captions = [f"a red car drives along a coast road at dusk, take {i}" for i in range(batch)]
    scorer.score(frames, captions)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        scorer.score(frames, captions)  # returns CPU tensors: the device work is finished
        times.append(time.perf_counter() - start)
    t = statistics.median(times)
    return {"clip_model": clip_model if not ctx.dry_run else "tiny-clip", "precision": "fp32", "batch_clips": batch,
            "frames_per_clip": k, "frame_size": side, "seconds_per_batch": round(t, 4),
            "clips_per_s": round(batch / t, 1), "frames_per_s": round(batch * k / t, 1)}  # fmt: skip


def _scorer_headline(f: dict[str, Any]) -> str:
    return f"{f['clips_per_s']} clips/s ({f['frames_per_s']} frames/s; {f['clip_model']}, batch {f['batch_clips']} x {f['frames_per_clip']} frames)"


class NotPossible(Exception):
    """The section cannot run on this machine, for a reason that is a result (not a failure)."""


#: Budgets (seconds on the H200; dry run) from the first H200 run: i3d 7 s, scorer 29 s, train 53 s,
#: models 47 s, sampling 42 s; ZeRO-3 with Ray goes last and gets what is left of the run's budget.
#: A dry run's sections take 5-30 s each on an idle 2-core machine; their budgets leave room for load.
SECTIONS = [
    Section("i3d", "I3D features (FVD)", run_i3d, 25, 120, headline=_i3d_headline),
    Section("scorer", "Aesthetic + CLIP scorer (curation)", run_scorer, 45, 120, needs=("open_clip",), headline=_scorer_headline),
    Section("train", "Base training step, ZeRO-2, bf16, 1 GPU", run_train, 75, 120, needs=("deepspeed",), headline=_train_headline),
    Section("models", "Paper-size cascade folder (random weights)", run_models, 70, 120, needs=("diffusers", "transformers"),
            headline=lambda f: f"{f['bytes_on_disk'] / 2**30:.1f} GiB written"),
    Section("sampling", "Base sampling, 50 DDPM steps + CFG, 16x320x512", run_sampling, 50, 120,
            needs=("diffusers", "transformers"), needs_models=True, headline=_sampling_headline),
    Section("cascade", "Whole cascade to 61x1280x2048, no offload", lambda ctx: run_cascade(ctx, False), 90, 120,
            needs=("diffusers", "transformers"), needs_models=True, headline=_cascade_headline),
    Section("cascade_offload", "Whole cascade to 61x1280x2048, --offload", lambda ctx: run_cascade(ctx, True), 90, 120,
            needs=("diffusers", "transformers"), needs_models=True, headline=_cascade_headline),
    Section("zero3", "ZeRO-3 step, 2 Ray workers on 1 GPU", run_zero3, 120, 120, needs=("ray", "deepspeed"), headline=_zero3_headline),
]  # fmt: skip
BY_NAME = {section.name: section for section in SECTIONS}


# --------------------------------------------------------------------------- one section, in its own process
def run_section(name: str, ctx: Context, result_file: Path) -> int:
    started = time.perf_counter()
    try:
        record: dict[str, Any] = {"status": "ok", "figures": BY_NAME[name].run(ctx)}
    except NotPossible as exc:
        record = {"status": "not possible", "reason": str(exc)}
    except Exception as exc:  # any failure of a section is its result; the others still run
        record = {"status": "failed", "reason": _reason(exc)}
    record["seconds"] = round(time.perf_counter() - started, 1)
    result_file.write_text(json.dumps(record, default=str))
    return 0


def _reason(exc: BaseException) -> str:
    """One line: the exception's first line, or, where that only announces what follows (Ray
    Train's "failed due to worker errors:"), the last error line of the whole chain."""
    from lavie.core.errors import first_line

    line = first_line(exc)
    if line.rstrip().endswith(":"):
        errors = [t.strip() for t in _error_text(exc).splitlines() if "Error" in t and not t.rstrip().endswith(":")]
        if errors:
            line = errors[-1]
    return line[:300]


# --------------------------------------------------------------------------- the driver
def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def drive(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    dry = args.dry_run
    out = Path(args.out)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    names = args.sections or [section.name for section in SECTIONS]
    budget = args.budget if args.budget is not None else (300.0 if dry else 470.0)
    deadline = time.monotonic() + budget
    report: dict[str, Any] = {
        "command": "python benchmarks/gpu_check.py " + " ".join(sys.argv[1:]),
        "dry_run": dry,
        "device": "cpu (dry run: tiny sizes, a check of the code paths, not a measurement)" if dry
        else torch.cuda.get_device_name(),  # fmt: skip
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "budget_s": budget,
        "sections": {},
    }
    started = time.perf_counter()
    chosen = [section for section in SECTIONS if section.name in names]
    records: dict[str, Any] = {}  # section name → its future
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for section in chosen:
            models = records.get("models")
            records[section.name] = pool.submit(_run_one, section, args, work, deadline, dry, budget, models)
        for section in chosen:  # the report lists the sections in their order, whichever ended first
            report["sections"][section.name] = records[section.name].result()
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "gpu_check.md").write_text(markdown(report))
    if not args.work and not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _run_one(
    section: Section, args: argparse.Namespace, work: Path, deadline: float, dry: bool, budget: float, models: Any
) -> dict[str, Any]:
    """Run one section in its own process, or say why it is skipped; ``models`` is the models
    section's future (the cascade sections wait for it and need it to have succeeded)."""
    record: dict[str, Any] = {"title": section.title}
    missing = [package for package in section.needs if importlib.util.find_spec(package) is None]
    models_record = models.result() if models is not None and section.needs_models else None
    if missing:
        record.update(status="skipped", reason=f"{missing[0]} not installed")
    elif section.needs_models and not (models_record and models_record["status"] == "ok"):
        why = "not run" if models_record is None else f"{models_record['status']}: {models_record.get('reason', '')}"
        record.update(status="skipped", reason=f"no cascade folder (models section {why})")
    else:
        own = section.dry_budget_s if dry else section.budget_s
        timeout = min(own, deadline - time.monotonic())
        if timeout < 5:
            record.update(status="skipped", reason=f"the run's budget of {budget:.0f} s is spent")
        else:
            record.update(_spawn(section, args, work, timeout))
            record["budget_s"] = round(timeout)
    status = record["status"]
    line = section.headline(record["figures"]) if status == "ok" else record.get("reason", "")
    print(f"[gpu_check] {section.name}: {status} ({record.get('seconds', 0)} s) {line}", flush=True)
    return record


def _spawn(section: Section, args: argparse.Namespace, work: Path, timeout: float) -> dict[str, Any]:
    result_file = work / f"{section.name}.result.json"
    result_file.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--out", str(args.out), "--work", str(work), "--section", section.name,
               "--result", str(result_file), "--cascade-steps", str(args.cascade_steps)] \
        + (["--dry-run"] if args.dry_run else []) \
        + (["--ray-address", args.ray_address] if args.ray_address else [])  # fmt: skip
    started = time.perf_counter()
    log = work / f"{section.name}.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            return {"status": "timed out", "reason": f"over its budget of {timeout:.0f} s", "seconds": round(timeout, 1)}
    if result_file.exists():
        return json.loads(result_file.read_text())
    return {"status": "failed", "reason": f"exit {code}: {_last_line(log.read_text(errors='replace'))}",
            "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip


def _kill_group(process: subprocess.Popen) -> None:
    """The section's process and what it started (Ray workers of a cluster it started itself)."""
    import signal

    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def markdown(report: dict[str, Any]) -> str:
    """The table for BENCHMARKS.md: one row per section, its main figures or why it has none."""
    lines = [
        f"`{report['command']}` on {report['device']} (torch {report['torch']}, CUDA {report['cuda']}); "
        f"total {report['total_seconds']} s of a {report['budget_s']:.0f} s budget.",
        "",
        "| section | status | seconds | figures |",
        "| --- | --- | ---: | --- |",
    ]
    for name, record in report["sections"].items():
        if record["status"] == "ok":
            figures = BY_NAME[name].headline(record["figures"])
        else:
            figures = record.get("reason", "")
        lines.append(f"| {record['title']} | {record['status']} | {record.get('seconds', '')} | {figures.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--dry-run", action="store_true", help="every section at tiny sizes on the CPU")
    parser.add_argument("--sections", type=lambda s: [p.strip() for p in s.split(",") if p.strip()],
                        help=f"a comma-separated subset of {','.join(BY_NAME)}")  # fmt: skip
    parser.add_argument("--budget", type=float, help="seconds for the whole run (default 470 on a GPU, 300 dry)")
    parser.add_argument("--cascade-steps", type=int, default=None,
                        help="denoising steps of each cascade stage (default 5 on a GPU, 2 dry; the release: 50)")
    parser.add_argument("--ray-address", help="join this Ray cluster for the zero3 section (default: start one)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="sections run at once, with --dry-run only (a GPU's figures are measured one at a time)")
    parser.add_argument("--work", help="scratch folder (default: a temporary one, removed at the end)")
    parser.add_argument("--keep-work", action="store_true", help="keep the temporary scratch folder")
    parser.add_argument("--section", choices=list(BY_NAME), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    prog = "gpu_check"
    unknown = [name for name in args.sections or [] if name not in BY_NAME]
    if unknown:
        print(f"{prog}: error: unknown section {unknown[0]!r} (sections: {', '.join(BY_NAME)})", file=sys.stderr)
        return 2
    if args.sections is not None and not args.sections:
        print(f"{prog}: error: --sections names no section", file=sys.stderr)
        return 2
    if args.budget is not None and args.budget <= 0:
        print(f"{prog}: error: --budget must be positive, got {args.budget:g}", file=sys.stderr)
        return 2
    if args.cascade_steps is not None and args.cascade_steps < 1:
        print(f"{prog}: error: --cascade-steps must be at least 1, got {args.cascade_steps}", file=sys.stderr)
        return 2
    if args.jobs < 1 or (args.jobs > 1 and not args.dry_run):
        print(f"{prog}: error: --jobs must be 1, or more with --dry-run (got {args.jobs})", file=sys.stderr)
        return 2
    args.cascade_steps = args.cascade_steps or (2 if args.dry_run else 5)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        print(f"{prog}: error: --out {args.out}: exists and is not a folder", file=sys.stderr)
        return 2
    if args.section:
        ctx = Context(dry_run=args.dry_run, work=Path(args.work), ray_address=args.ray_address,
                      cascade_steps=args.cascade_steps)  # fmt: skip
        if args.dry_run:
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
        return run_section(args.section, ctx, Path(args.result))
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print(f"{prog}: no CUDA GPU visible to torch {torch.__version__}: nothing measured (--dry-run checks the code paths on the CPU)",
              file=sys.stderr)  # fmt: skip
        return 2
    report = drive(args)
    print(f"[gpu_check] wrote {Path(args.out) / 'gpu_check.json'} and gpu_check.md in {report['total_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
