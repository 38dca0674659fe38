"""`lavie import-release base` on a real-size checkpoint: time and peak memory, side by side with a
straightforward conversion, in one run.

1. Writes a random checkpoint of the full SD 1.4-based base model in the release's layout and
   format (``torch.save({'ema': state_dict})``, fp32, ~3.6 GB) to --workdir.
2. The importer (memory-mapped read, model on the meta device, parameters assigned, safetensors
   written from the mapped pages), in a fresh process.
3. The straightforward way, in a fresh process: ``torch.load`` into memory, the model built and
   randomly initialised, ``load_state_dict`` (a copy), ``save_pretrained``.

Each process reports its wall time and peak resident memory: all of it (``ru_maxrss``) and split
into anonymous memory (what the process itself holds) and file-backed pages (the mapped checkpoint,
which the kernel can drop and re-read), sampled every 10 ms from /proc/self/status. Files written
are deleted at the end.

Usage: python benchmarks/bench_release_import.py [--workdir /tmp] [--skip-baseline]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

GIB = 1024**3


class MemorySampler(threading.Thread):
    """Peaks of RssAnon and RssFile of this process, read from /proc/self/status."""

    def __init__(self, interval: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.interval, self.peaks, self.running = interval, {"RssAnon": 0, "RssFile": 0}, True

    def run(self) -> None:
        while self.running:
            for line in Path("/proc/self/status").read_text().splitlines():
                name, _, value = line.partition(":")
                if name in self.peaks:
                    self.peaks[name] = max(self.peaks[name], int(value.split()[0]) * 1024)
            time.sleep(self.interval)

    def stop(self) -> dict[str, float]:
        self.running = False
        self.join()
        return {
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB,
            "peak_anon_gib": self.peaks["RssAnon"] / GIB,
            "peak_file_gib": self.peaks["RssFile"] / GIB,
        }


def child(mode: str, checkpoint: Path, config: Path, out: Path) -> dict[str, float]:
    """One measurement, in this (fresh) process."""
    import torch

    from cascade.models.configs import SD1_UNET_CONFIG
    from cascade.models.release import import_release
    from cascade.models.release.stages import DERIVED_BUFFER, RELEASE_STAGES
    from lavie.synthetic.release_checkpoints import write_release_checkpoint

    if mode == "write":
        start = time.perf_counter()
        config.write_text(json.dumps(SD1_UNET_CONFIG))
        write_release_checkpoint(checkpoint, "base", SD1_UNET_CONFIG, std=0.02)
        return {"seconds": time.perf_counter() - start, "size_gib": checkpoint.stat().st_size / GIB}
    sampler = MemorySampler()
    sampler.start()
    start = time.perf_counter()
    if mode == "importer":
        import_release("base", checkpoint, config, out)
    else:
        spec = RELEASE_STAGES["base"]
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["ema"]
        model = spec.model_class.from_config({**SD1_UNET_CONFIG, **spec.options.to_config()})
        model.load_state_dict({spec.our_key(k): v for k, v in state.items() if not DERIVED_BUFFER.search(k)})
        model.save_pretrained(out)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, **sampler.stop()}


def measure(mode: str, workdir: Path) -> dict[str, float]:
    """Run one ``child`` measurement in a fresh Python process (``workdir``: the --workdir given)."""
    args = [sys.executable, __file__, "--child", mode, "--workdir", str(workdir)]
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"{mode} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp"))
    parser.add_argument("--skip-baseline", action="store_true", help="only the importer (needs ~3x less memory)")
    parser.add_argument("--child", choices=["write", "importer", "baseline"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    workdir = args.workdir / "bench_release_import"
    checkpoint, config = workdir / "lavie_base.pt", workdir / "unet_config.json"
    if args.child:
        print(json.dumps(child(args.child, checkpoint, config, workdir / f"out-{args.child}")))
        return
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    try:
        written = measure("write", args.workdir)
        print(f"checkpoint: {written['size_gib']:.2f} GiB, written in {written['seconds']:.0f} s")
        results = {"importer": measure("importer", args.workdir)}
        if not args.skip_baseline:
            results["baseline"] = measure("baseline", args.workdir)
        print(f"{'':10} {'seconds':>8} {'peak RSS GiB':>13} {'anon GiB':>9} {'file GiB':>9}")
        for name, r in results.items():
            row = f"{r['seconds']:8.1f} {r['peak_rss_gib']:13.2f} {r['peak_anon_gib']:9.2f} {r['peak_file_gib']:9.2f}"
            print(f"{name:10} {row}")
        if "baseline" in results:
            ours, theirs = results["importer"], results["baseline"]
            print(f"importer / baseline: time {ours['seconds'] / theirs['seconds']:.2f}x, peak RSS "
                  f"{ours['peak_rss_gib'] / theirs['peak_rss_gib']:.2f}x, anon "
                  f"{ours['peak_anon_gib'] / theirs['peak_anon_gib']:.2f}x")  # fmt: skip
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
