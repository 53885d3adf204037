"""The example sweep (examples/sweep.yaml on examples/train_unet.py): TPE vs random search at equal budget, the
best configuration of each re-trained on a held-out random seed, and the overhead per trial of running the
program as a new process and as a fork of a warm interpreter (the sweep file's `preload`, what the example
uses) against the same training run in-process.

    python benchmarks/sweep_example.py --trials 6
Writes benchmarks/results/sweep_example.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))
# a short run of the example for the overhead check (one epoch of 64 images, FID of 8): a fixed cost is
# measured best on a short run, whose time varies less on shared cores
OVERHEAD_ARGS = ["--dataset=mnist", "--num_epochs=1", "--max_train_samples=64", "--num_fid_samples=8", "--seed=0"]


def in_process(argv: list[str]) -> float:
    import contextlib
    import io

    import train_unet  # noqa: E402  (examples/ is on sys.path)

    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        assert train_unet.main(argv) == 0
    return time.perf_counter() - start


def as_subprocess(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, str(EXAMPLES / "train_unet.py"), *argv], check=True, capture_output=True)
    return time.perf_counter() - start


def forked(warm, argv: list[str]) -> float:
    """One run forked from the warm interpreter, as `diffsearch sweep` runs a trial of a sweep with `preload`."""
    start = time.perf_counter()
    read, write = os.pipe()
    with open(os.devnull, "wb") as null:
        try:
            process = warm.fork(
                [sys.executable, str(EXAMPLES / "train_unet.py"), *argv], dict(os.environ), write, null.fileno()
            )
        finally:
            os.close(write)
    with open(read, "rb") as stdout:
        stdout.read()
    assert process.wait() == 0
    return time.perf_counter() - start


def sweep(searcher: str, trials: int, out: Path) -> dict:
    study = f"sweep-example-{searcher}"
    cmd = [
        sys.executable,
        "-m",
        "diffsearch",
        "sweep",
        str(EXAMPLES / "sweep.yaml"),
        "--searcher",
        searcher,
        "--trials",
        str(trials),
        "--study",
        study,
        "--out",
        str(out / study),
        "--json",
    ]
    start = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    results = json.loads(done.stdout)
    results["wall_seconds"] = time.perf_counter() - start
    return results


def retrain(params: dict, seed: int) -> float:
    """The last reported FID of the example trained with ``params`` and another random seed."""
    argv = [f"--{k}={v}" for k, v in params.items() if k != "seed"] + [f"--seed={seed}"]
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "train_unet.py"), *argv], check=True, capture_output=True, text=True
    )
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return float(reports[-1]["fid"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=6, help="trials per searcher (%(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="overhead measurements, alternating (%(default)s)")
    p.add_argument("--heldout-seed", type=int, default=1, help="random seed of the re-training (%(default)s)")
    p.add_argument("--overhead-only", action="store_true", help="measure the overhead, skip the sweeps")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sweep_example"))
    args = p.parse_args(argv)
    out = Path(args.out)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "diffsearch-sweep-example"
    r: dict = {"trials": args.trials, "load_average_at_start": os.getloadavg()}

    in_process(OVERHEAD_ARGS)  # warm: imports and the cached Inception features of the held-out images
    import yaml

    from diffsearch.sweeps.warm_interpreter import WarmInterpreter

    preload = yaml.safe_load((EXAMPLES / "sweep.yaml").read_text())["preload"]
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    with WarmInterpreter(preload, str(EXAMPLES / "train_unet.py"), work / "warm-interpreter.log") as warm:
        triples = [
            (as_subprocess(OVERHEAD_ARGS), forked(warm, OVERHEAD_ARGS), in_process(OVERHEAD_ARGS))
            for _ in range(args.repeats)
        ]
        warm_start = warm.start_seconds
    r["overhead"] = {
        "preload": preload,
        "warm_interpreter_start_s": warm_start,
        "args": OVERHEAD_ARGS,
        "load_average": [load_before, os.getloadavg()[0]],
        "subprocess_s": [a for a, _, _ in triples],
        "forked_s": [b for _, b, _ in triples],
        "in_process_s": [c for _, _, c in triples],
        "median_overhead_subprocess_s": statistics.median(a - c for a, _, c in triples),
        "median_overhead_forked_s": statistics.median(b - c for _, b, c in triples),
    }
    print(json.dumps(r["overhead"]), flush=True)

    r["searchers"] = {}
    if args.overhead_only and out.with_suffix(".json").is_file():  # keep the last sweeps' results
        last = json.loads(out.with_suffix(".json").read_text())
        r["searchers"], r["trials"] = last["searchers"], last["trials"]
        r["load_average_at_start"] = last["load_average_at_start"]
    for searcher in () if args.overhead_only else ("tpe", "random"):
        res = sweep(searcher, args.trials, work)
        states = [t["state"] for t in res["trials"]]
        best = res["best"]
        r["searchers"][searcher] = {
            "best_fid": best["value"] if best else None,
            "best_params": best["params"] if best else None,
            "complete": states.count("COMPLETE"),
            "pruned": states.count("PRUNED"),
            "failed": states.count("FAIL"),
            "wall_minutes": res["wall_seconds"] / 60,
            "heldout_fid": retrain(best["params"], args.heldout_seed) if best else None,
        }
        print(searcher, json.dumps(r["searchers"][searcher]), flush=True)
    r["load_average_at_end"] = os.getloadavg()
    args.trials = r["trials"]

    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(r, indent=1))
    o = r["overhead"]
    lines = [
        "# The example sweep: TPE vs random, and the subprocess route's overhead",
        "",
        f"`examples/sweep.yaml` on `examples/train_unet.py` (MNIST, 16 px, FID of 32 images), {args.trials} trials "
        "per searcher, Hyperband as the file says; the best configuration of each re-trained once with random "
        f"seed {args.heldout_seed} (held out: the search ran seed 0). Load average at start / end: "
        f"{r['load_average_at_start'][0]:.1f} / {r['load_average_at_end'][0]:.1f} (2 cores).",
        "",
        "| searcher | best FID (search) | re-trained, held-out seed | complete / pruned / failed | minutes |",
        "|---|---|---|---|---|",
    ]
    for name, s in r["searchers"].items():
        lines.append(
            f"| {name} | {s['best_fid']:.1f} | {s['heldout_fid']:.1f} | {s['complete']} / {s['pruned']} / "
            f"{s['failed']} | {s['wall_minutes']:.1f} |"
        )
    seconds = ", ".join
    lines += [
        "",
        f"Overhead per trial (`{' '.join(o['args'])}`, {len(o['forked_s'])} alternating triples, the same "
        f"training run each time; load average {o['load_average'][0]:.1f} / {o['load_average'][1]:.1f} at "
        "start / end on 2 cores):",
        "",
        "| route | seconds per run | median overhead vs in-process |",
        "|---|---|---|",
        f"| new process (no `preload`) | {seconds(f'{x:.1f}' for x in o['subprocess_s'])} | "
        f"{o['median_overhead_subprocess_s']:.2f} s |",
        f"| forked from the warm interpreter (`preload: {o['preload']}`) | "
        f"{seconds(f'{x:.1f}' for x in o['forked_s'])} | **{o['median_overhead_forked_s']:.2f} s** |",
        f"| in-process (the floor) | {seconds(f'{x:.1f}' for x in o['in_process_s'])} | - |",
        "",
        f"The warm interpreter's start (imports and `load_inception`, once per worker): "
        f"{o['warm_interpreter_start_s']:.1f} s. The target was < 2 s per trial.",
        "",
        f"command: python benchmarks/sweep_example.py --trials {args.trials}",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
