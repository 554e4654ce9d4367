"""Training throughput on 1 and 2 processes (torchrun, gloo on CPUs / NCCL on GPUs) with the same global batch.

    GANKIT_DATA=../shared/data .venv/bin/python benchmarks/ddp_scaling.py --seconds 60 [--reps 2] [--cases 1x2,2x1]

Each case is a separate `gankit train` (1 process with 1 or 2 threads; 2 processes under torchrun with 1
thread each) with a time limit. Throughput is images/s between the first and the last logged step, from
stats.jsonl's ``kimg`` and ``seconds``, so start-up (importing torch, loading data) and the first steps are
left out. With ``--reps`` the cases alternate (1x1, 1x2, 2x1, 1x1, ...) and each reports its median, so
a noisy machine slows every case alike. The global batch is the preset's own unless ``--batch`` is given.
Prints a table and writes benchmarks/out/ddp_scaling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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


def parse_cases(text: str) -> list[tuple[int, int]]:
    """``"1x1,1x2,2x1"`` as [(processes, threads), ...]; a clear error for anything else."""
    cases = []
    for part in text.split(","):
        try:
            procs, threads = (int(v) for v in part.strip().split("x"))
        except ValueError:
            raise SystemExit(f"--cases: {part!r} is not PROCESSESxTHREADS (e.g. 2x1)") from None
        if procs < 1 or threads < 1:
            raise SystemExit(f"--cases: {part!r} needs at least one process and one thread")
        cases.append((procs, threads))
    return cases


def launch(procs: int, threads: int, preset: str, out: Path, seconds: float, batch: int | None,
           extra: list[str]) -> None:
    sizes = [] if batch is None else [f"data.batch_size={batch}", f"train.g_batch_size={batch}"]
    sets = [f"train.time_limit={seconds}", f"train.threads={threads}", *sizes, "train.log_every=2",
            "train.sample_every=1000000", "train.checkpoint_every=1000000", "train.steps=1000000", *extra]
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
    ap.add_argument("--batch", type=int, default=None,
                    help="global batch size, split over the processes (default: the preset's own)")
    ap.add_argument("--reps", type=int, default=1, help="alternating repetitions of every case (median reported)")
    ap.add_argument("--cases", default="1x1,1x2,2x1", help="PROCESSESxTHREADS list; the first is the baseline")
    ap.add_argument("--out", default="benchmarks/out")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    cases = parse_cases(args.cases)
    if args.reps < 1:
        raise SystemExit("--reps must be at least 1")
    out = Path(args.out)
    rows = []
    baseline = "vs {}x{}".format(*cases[0])
    print(f"{'preset':<22} {'processes':>9} {'threads':>7} {'steps':>6} {'images/s':>9} {baseline:>7}")
    for preset in args.presets:
        got: dict[tuple[int, int], list[tuple[float, int]]] = {c: [] for c in cases}
        for _ in range(args.reps):
            for procs, threads in cases:
                run = out / "ddp_scaling" / f"{preset}-p{procs}-t{threads}"
                launch(procs, threads, preset, run, args.seconds, args.batch, args.overrides)
                got[(procs, threads)].append(throughput(run))
        base = statistics.median(ips for ips, _ in got[cases[0]])
        for procs, threads in cases:
            all_ips = [ips for ips, _ in got[(procs, threads)]]
            ips, steps = statistics.median(all_ips), max(st for _, st in got[(procs, threads)])
            rows.append({"preset": preset, "processes": procs, "threads": threads, "global_batch": args.batch,
                         "steps": steps, "images_per_second": round(ips, 1), "all_images_per_second":
                         [round(v, 1) for v in all_ips], "speedup": round(ips / base, 3)})
            print(f"{preset:<22} {procs:>9} {threads:>7} {steps:>6} {ips:>9.1f} {ips / base:>6.2f}x", flush=True)
        out.mkdir(parents=True, exist_ok=True)  # written after every preset, so a failed one keeps the others
        (out / "ddp_scaling.json").write_text(json.dumps({"cpus": os.cpu_count(), "seconds": args.seconds,
                                                          "reps": args.reps, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
