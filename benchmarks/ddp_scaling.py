"""Training throughput on 1 and 2 processes (torchrun, gloo on CPUs / NCCL on GPUs) with the same global batch.

    GANKIT_DATA=../shared/data .venv/bin/python benchmarks/ddp_scaling.py --seconds 60

Each case is a separate `gankit train` (1 process with 1 or 2 threads; 2 processes under torchrun with 1
thread each) with a time limit. Throughput is images/s between the first and the last logged step, from
stats.jsonl's ``kimg`` and ``seconds``, so start-up (importing torch, loading data) and the first steps are
left out. Prints a table and writes benchmarks/out/ddp_scaling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from gankit.run import RunDir, read_stats

ROOT = Path(__file__).resolve().parents[1]
CASES = [(1, 1), (1, 2), (2, 1)]  # (processes, threads per process)


def throughput(run: Path) -> tuple[float, int]:
    """(images/s between the first and last logged training record, steps done)."""
    recs = [r for r in read_stats(RunDir(run)) if "kimg" in r]
    if len(recs) < 2:
        raise SystemExit(f"{run}: too few logged steps to measure; raise --seconds")
    first, last = recs[0], recs[-1]
    return 1000 * (last["kimg"] - first["kimg"]) / (last["seconds"] - first["seconds"]), last["step"]


def launch(procs: int, threads: int, preset: str, out: Path, seconds: float, batch: int, extra: list[str]) -> None:
    sets = [f"train.time_limit={seconds}", f"train.threads={threads}", f"data.batch_size={batch}",
            f"train.g_batch_size={batch}", "train.log_every=2", "train.sample_every=1000000",
            "train.checkpoint_every=1000000", "train.steps=1000000", *extra]
    args = ["-m", "gankit", "train", "--no-progress", "--force", "-p", preset, "-o", str(out)]
    args += [a for s in sets for a in ("--set", s)]
    if procs > 1:
        args = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs), *args]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("presets", nargs="*", default=["seed002-mlp-mnist", "seed001-dcgan-mnist"])
    ap.add_argument("--seconds", type=float, default=60.0, help="training time per case")
    ap.add_argument("--batch", type=int, default=64, help="global batch size (split over the processes)")
    ap.add_argument("--out", default="benchmarks/out")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    out = Path(args.out)
    rows = []
    print(f"{'preset':<22} {'processes':>9} {'threads':>7} {'steps':>6} {'images/s':>9} {'vs 1x1':>7}")
    for preset in args.presets:
        base = None
        for procs, threads in CASES:
            run = out / "ddp_scaling" / f"{preset}-p{procs}-t{threads}"
            launch(procs, threads, preset, run, args.seconds, args.batch, args.overrides)
            ips, steps = throughput(run)
            base = base or ips
            rows.append({"preset": preset, "processes": procs, "threads": threads, "global_batch": args.batch,
                         "steps": steps, "images_per_second": round(ips, 1), "speedup": round(ips / base, 3)})
            print(f"{preset:<22} {procs:>9} {threads:>7} {steps:>6} {ips:>9.1f} {ips / base:>6.2f}x", flush=True)
            out.mkdir(parents=True, exist_ok=True)  # written after every case, so a failed case keeps the others
            (out / "ddp_scaling.json").write_text(json.dumps({"cpus": os.cpu_count(), "seconds": args.seconds,
                                                              "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
