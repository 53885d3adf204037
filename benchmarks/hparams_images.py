"""The image study of the thesis study of Optuna HPO for diffusion training: baseline vs random vs TPE
vs random + successive halving, scored by FID.

Table shaped like the thesis study's image tables (FID mean +- std over re-trainings, total study minutes),
plus a sanity row (FID of real held-out images against the training reference: the floor for this many
images) and the Inception feature throughput. Every study lives in one storage (default
benchmarks/results/hparams_images.db), so rerunning resumes. Writes benchmarks/results/hparams_images.md
and .json.

    # small CPU budget (what benchmarks/results/hparams_images.md holds; ~20 min on 2 busy cores)
    python benchmarks/hparams_images.py --trials 4 --epochs 2 --repeats 2 --width 0.125 --resolution 16 \\
        --train-images 256 --fid-samples 48 --sample-steps 10 --min-epochs 1
    # the thesis study's protocol on one GPU: 50 trials, 30 epochs, SH at 6/12/24, best and baseline x 10
    python benchmarks/hparams_images.py --full --dataset path/to/butterflies   # or digits / mnist
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from diffsearch.jobs.hparams import HparamsOptions, run_hparams

RESULTS = Path(__file__).parent / "results"
STRATEGIES = {"random": ("random", "none"), "tpe": ("tpe", "none"), "random+sh": ("random", "sh")}
SEED_FID = {
    "baseline": 236.79,
    "tpe": 136.17,
    "random": 149.27,
    "random+sh": 149.27,
}  # the thesis study's, on butterflies
SEED_MINUTES = {"tpe": 122.97, "random": 120.07, "random+sh": 92.23}
FULL = dict(
    trials=50,
    epochs=30,
    repeats=10,
    width=1.0,
    resolution=None,
    train_images=None,
    fid_samples=1000,
    sample_steps=1000,
    sampler="ddpm",
    min_epochs=6,
    device="cuda",
)


def options_for(args, strategy: str) -> HparamsOptions:
    common = dict(
        dataset=args.dataset,
        epochs=args.epochs,
        seed=args.seed,
        storage=args.storage,
        out=str(Path(args.runs) / strategy),
        study=f"images-{Path(args.dataset).name}-{strategy}",
        baseline_runs=0,
        min_epochs=args.min_epochs,
        width=args.width,
        resolution=args.resolution,
        fid_samples=args.fid_samples,
        sample_steps=args.sample_steps,
        sampler=args.sampler,
        device=args.device,
        train_images=args.train_images,
        jobs=args.jobs,
    )
    if strategy == "baseline":
        return HparamsOptions(**common, baseline=True, repeats=max(1, args.repeats))
    searcher, prune = STRATEGIES[strategy]
    return HparamsOptions(**common, searcher=searcher, prune=prune, trials=args.trials, repeats=args.repeats)


def inception_throughput(resolution: int, device: str, n: int) -> float:
    """Images/s through the FID network (resize to 299 included), after a warm-up batch."""
    from diffsearch.backends.unet_trainer import resolve_device
    from diffsearch.objectives.fid import inception_features

    device = resolve_device(device)
    images = np.random.default_rng(0).integers(0, 256, size=(n, resolution, resolution, 3), dtype=np.uint8)
    inception_features(images[:2], device)
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
    start = time.perf_counter()
    inception_features(images, device)
    return n / (time.perf_counter() - start)


def counts(study: optuna.Study) -> str:
    states = [t.state for t in study.get_trials(deepcopy=False)]
    return "/".join(str(states.count(s)) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))


def row(strategy: str, result: dict, baseline_mean: float | None, storage: str) -> dict:
    summary = result.get("baseline") if strategy == "baseline" else result.get("best_repeats")
    best = result.get("best")
    mean = summary["mean"] if summary and summary["mean"] is not None else (best or {}).get("score")
    record = {
        "strategy": strategy,
        "mean": mean,
        "std": summary["std"] if summary else None,
        "runs": summary["runs"] if summary else 0,
        "best": best["score"] if best else None,
        "kid": (best or {}).get("parts", {}).get("kid"),
        "params": best["params"] if best else result.get("baseline", {}).get("params"),
        "minutes": result.get("study_minutes"),
        "counts": "-",
    }
    if strategy != "baseline":
        study = optuna.load_study(study_name=result["study"], storage=storage)
        record["counts"] = counts(study)
    if baseline_mean and mean is not None and strategy != "baseline":
        record["improvement"] = f"{100 * (mean - baseline_mean) / baseline_mean:+.1f} %"
        seed = SEED_FID[strategy]
        record["seed_improvement"] = f"{100 * (seed - SEED_FID['baseline']) / SEED_FID['baseline']:+.1f} %"
    return record


def _num(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict], sanity: dict | None) -> str:
    lines = [
        "| strategy | FID (mean ± std) | runs | best trial FID | best trial KID | trials (complete/pruned/failed) "
        "| study minutes | vs baseline | thesis study's vs baseline | thesis study's FID / minutes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        score = (
            "-"
            if r["mean"] is None
            else (f"{r['mean']:.2f} ± {r['std']:.2f}" if r["runs"] else f"{r['mean']:.2f} (best trial, not re-trained)")
        )
        seed = f"{SEED_FID[r['strategy']]:.2f} / {SEED_MINUTES.get(r['strategy'], '-')}"
        lines.append(
            f"| {r['strategy']} | {score} | {r['runs']} | {_num(r['best'])} | {_num(r['kid'], 3)} | "
            f"{r['counts']} | {_num(r['minutes'], 1)} | {r.get('improvement', '-')} | "
            f"{r.get('seed_improvement', '-')} | {seed} |"
        )
    if sanity:
        lines.append(
            f"| sanity: {sanity['count']} real held-out images vs training reference | "
            f"{sanity['fid']:.2f} | - | - | {sanity['kid']:.3f} | - | - | - | - | - |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--strategies", nargs="+", default=["baseline", "random", "tpe", "random+sh"])
    parser.add_argument(
        "--full",
        action="store_true",
        help="the thesis study's protocol on one GPU: " + ", ".join(f"{k}={v}" for k, v in FULL.items()),
    )
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="re-trainings of the baseline / best config")
    parser.add_argument("--min-epochs", type=int, default=1, help="successive halving: first checkpoint")
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--train-images", type=int, default=256)
    parser.add_argument("--fid-samples", type=int, default=48)
    parser.add_argument("--sample-steps", type=int, default=10)
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="parallel trial processes (the repeats run in turn)")
    parser.add_argument("--throughput-images", type=int, default=20, help="images timed through Inception")
    parser.add_argument("--storage", help="default: sqlite file benchmarks/results/hparams_images[_full].db")
    parser.add_argument("--runs", default="runs/bench-images")
    parser.add_argument("--tag", default="hparams_images", help="name of the result files")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.full:
        for key, value in FULL.items():
            setattr(args, key, value)
        args.tag = args.tag if args.tag != "hparams_images" else "hparams_images_full"
        args.throughput_images = max(args.throughput_images, 500)
    args.storage = args.storage or f"sqlite:///{(RESULTS / f'{args.tag}.db').resolve()}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    throughput = inception_throughput(args.resolution or 32, args.device, args.throughput_images)
    print(f"Inception throughput on {args.device}: {throughput:.1f} images/s", flush=True)
    rows, sanity, baseline_mean = [], None, None
    for strategy in args.strategies:
        start = time.perf_counter()
        result = run_hparams(options_for(args, strategy), log=lambda line: print(line, flush=True))
        sanity = result.get("sanity", sanity)
        rows.append(row(strategy, result, baseline_mean, args.storage))
        if strategy == "baseline":
            baseline_mean = rows[-1]["mean"]
        print(f"{strategy}: FID {rows[-1]['mean']} in {(time.perf_counter() - start) / 60:.1f} min", flush=True)
        settings = {k: v for k, v in vars(args).items() if k not in ("strategies",)}
        text = (
            f"# Image study (as in the thesis study of Optuna HPO for diffusion training) on {args.dataset}\n\n"
            f"Settings: `{json.dumps(settings)}`\n\n{table(rows, sanity)}\n\n"
            f"Inception (FID network) throughput on {args.device}: {throughput:.1f} images/s "
            f"({args.throughput_images} images, resize to 299 included).\n"
        )
        (RESULTS / f"{args.tag}.md").write_text(text)
        (RESULTS / f"{args.tag}.json").write_text(
            json.dumps(
                {"settings": settings, "rows": rows, "sanity": sanity, "throughput": throughput}, indent=2, default=str
            )
        )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
