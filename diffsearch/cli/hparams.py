"""``diffsearch hparams``: arguments and printing for the training-hyperparameter search."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from diffsearch.cli.parser import add_trial_timeout, add_worker_arguments
from diffsearch.cli.progress import best_so_far_bar, finish, params_table
from diffsearch.cli.report import print_importance

from diffsearch.backends.unet_trainer import SAMPLING_SCHEDULERS
from diffsearch.datasets import TOY_DATASETS
from diffsearch.datasets.images import IMAGE_DATASETS
from diffsearch.jobs.hparams import HparamsOptions, run_hparams
from diffsearch.objectives.prdc import PRDC_SCALAR_FORMULA
from diffsearch.searchers import PRUNERS, SEARCHERS

DESCRIPTION = f"""\
Tune the training of a diffusion model, as the thesis study of Optuna HPO for diffusion training did.
Each trial trains the MLP denoiser on the data with one configuration from the space (lr, lr
scheduler, warm-up ratio, batch size, optimizer, weight decay, training timesteps), samples as many
points as are held out, and scores them by PRDC (k = 5) against the held-out points. The score to
minimise is the PRDC loss:
  {PRDC_SCALAR_FORMULA}
On images (--dataset digits, mnist, fashion-mnist or a folder) each trial trains a diffusers
UNet2DModel from scratch (the tutorial baseline: channels 64,128,128,256 x --width) on the thesis
study's image space (lr, lr scheduler, warm-up, batch size, optimizer, weight decay, noise
schedule), samples --fid-samples images with --sample-steps DDIM (or DDPM) steps and scores them by
FID against as many training images (real Inception-v3 network; KID beside it). Lower is better.
Defaults follow the thesis study on images: 30 epochs; with --prune sh, checkpoints at 6, 12, 24
epochs.
Every trial is an Optuna trial in one storage (default: a SQLite file in --out), so rerunning the same
command resumes the study, and `optuna-dashboard <storage URL>` shows it.

examples:
  diffsearch hparams --dataset moons --searcher tpe --trials 50
  diffsearch hparams --dataset spirals --searcher random --trials 50 --prune sh --repeats 10
  diffsearch hparams --dataset moons --baseline --repeats 10
  diffsearch hparams --dataset my_points.npy --searcher gp --trials 30 --epochs 50
  diffsearch hparams --dataset spirals --searcher generative --warm-start hparams-moons-tpe --storage sqlite:///all.db
  diffsearch hparams --dataset digits --searcher tpe --trials 3 --epochs 1 --width 0.25 --fid-samples 200
  diffsearch hparams --dataset path/to/butterflies --resolution 64 --prune sh --device cuda
"""


def add_parser(subparsers, parser_class, formatter, help_text: str) -> None:
    p = subparsers.add_parser("hparams", help=help_text, description=DESCRIPTION, formatter_class=formatter)
    p.add_argument(
        "--dataset",
        default="moons",
        help=f"vectors: {', '.join(TOY_DATASETS)}, or a .npy / .csv file of N x D floats; "
        f"images: {', '.join(IMAGE_DATASETS)}, or a folder of images (or a saved Hugging Face "
        "dataset)",
    )
    p.add_argument("--searcher", default="tpe", help=f"one of: {', '.join(SEARCHERS)}")
    p.add_argument(
        "--space",
        default=None,
        help="training space (`diffsearch list`: built-in or a plugin's); default toy2d for vectors, images for images",
    )
    p.add_argument("--trials", type=int, default=50, help="finished trials the study should hold")
    p.add_argument(
        "--warm-start",
        nargs="+",
        default=[],
        metavar="STUDY",
        help="generative searcher only: earlier studies of the same space in this storage "
        "(e.g. hparams-moons-tpe); their trials pre-train the model (HPO-B's meta-training)",
    )
    p.add_argument("--epochs", type=int, help="training epochs per trial (default: 100 vectors, 30 images)")
    p.add_argument("--prune", default="none", help=f"early stopping by epochs: {', '.join(PRUNERS)}")
    p.add_argument(
        "--min-epochs",
        type=int,
        help="pruning: first checkpoint (default, as in the thesis study: 8 vectors, 6 images)",
    )
    p.add_argument("--reduction-factor", type=int, default=2, help="pruning: reduction factor (thesis study: 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler and the trainings")
    p.add_argument("--study", help="study name (default: hparams-<dataset>-<searcher>[-<prune>])")
    p.add_argument(
        "--storage",
        help="Optuna storage URL (sqlite:///x.db, postgresql://...) or a "
        "journal file ending in .log (default: sqlite file in --out)",
    )
    p.add_argument("--out", help="run directory for results.json, plots and samples (default: runs/<study>)")
    p.add_argument(
        "--baseline", action="store_true", help="do not search: train the space's baseline config --repeats times"
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=0,
        help="re-train the best config (or with --baseline, the baseline) N times: mean +- std",
    )
    p.add_argument(
        "--baseline-runs", type=int, default=1, help="baseline trainings to compare a search against (0 to skip)"
    )
    add_worker_arguments(p, "training trials")
    add_trial_timeout(p, "a training")
    p.add_argument(
        "--points", type=int, default=100_000, dest="n_points", help="points generated for a built-in data set"
    )
    p.add_argument("--held-out", type=int, default=20_000, help="of those, points kept for scoring")
    images = p.add_argument_group("images")
    images.add_argument(
        "--width", type=float, default=1.0, help="UNet channels = (64,128,128,256) x width; 0.25 for small CPU runs"
    )
    images.add_argument(
        "--resolution",
        type=int,
        help="image side in pixels, a multiple of 8 (default: 32 for the 28x28 / 8x8 sets, 64 for folders)",
    )
    images.add_argument(
        "--fid-samples",
        type=int,
        default=1000,
        help="images generated per FID, and training images in the reference "
        "(Inception runs at ~11 images/s on 2 CPU cores)",
    )
    images.add_argument("--sample-steps", type=int, default=50, help="denoising steps when sampling")
    images.add_argument("--sampler", default="ddim", choices=SAMPLING_SCHEDULERS, help="sampling scheduler")
    images.add_argument("--device", default="auto", help="auto, cpu or cuda (mixed precision on cuda)")
    images.add_argument("--train-images", type=int, help="train on the first N training images only")
    p.add_argument("--json", action="store_true", help="print results.json to stdout instead of tables")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    options = HparamsOptions(
        dataset=args.dataset,
        searcher=args.searcher,
        space=args.space,
        trials=args.trials,
        epochs=args.epochs,
        prune=args.prune,
        min_epochs=args.min_epochs,
        reduction_factor=args.reduction_factor,
        seed=args.seed,
        study=args.study,
        storage=args.storage,
        out=args.out,
        baseline=args.baseline,
        repeats=args.repeats,
        baseline_runs=args.baseline_runs,
        jobs=args.workers,
        heartbeat=args.heartbeat,
        trial_timeout=args.trial_timeout,
        n_points=args.n_points,
        held_out=args.held_out,
        width=args.width,
        resolution=args.resolution,
        fid_samples=args.fid_samples,
        sample_steps=args.sample_steps,
        sampler=args.sampler,
        device=args.device,
        train_images=args.train_images,
        warm_start=args.warm_start,
    )
    console = Console(stderr=True)
    with best_so_far_bar(console) as update:
        results = run_hparams(options, progress=update, log=console.print)
    return finish(results, args.json, print_summary)


def _fmt(summary) -> str:
    if not summary or summary.get("mean") is None:
        return "-"
    return f"{summary['mean']:.4f} ± {summary['std']:.4f} ({summary['runs']} runs)"


def print_summary(results: dict, console: Console) -> None:
    best = results.get("best")
    if best:
        console.print(
            params_table(
                f"best of study {results['study']} (trial {best['number']})",
                best["params"],
                fmt=lambda v: f"{v:.3g}" if isinstance(v, float) else str(v),
            )
        )
    images = results.get("scalar") == "fid"
    parts_shown = ("kid", "kid_std") if images else ("precision", "recall", "density", "coverage")
    table = Table(title="FID (lower is better)" if images else "PRDC loss (lower is better)")
    for column in ("config", "FID" if images else "score", *parts_shown):
        table.add_column(column, justify="right" if column != "config" else "left")
    rows = [("best trial", best)] if best else []
    first_baseline = (results.get("baseline") or {}).get("trials", [])
    rows += [("baseline", first_baseline[0])] if first_baseline else []
    for label, record in rows:
        parts = record.get("parts", {})
        table.add_row(
            label,
            "-" if record["score"] is None else f"{record['score']:.4f}",
            *[f"{parts[p]:.3f}" if p in parts else "-" for p in parts_shown],
        )
    if results.get("sanity"):
        sanity = results["sanity"]
        table.add_row(
            f"real held-out images ({sanity['count']})",
            f"{sanity['fid']:.4f}",
            f"{sanity['kid']:.3f}",
            f"{sanity['kid_std']:.3f}",
        )
    console.print(table)
    print_importance(results.get("importance"), console)  # over the params every complete trial has
    if "best_repeats" in results:
        console.print(f"best config re-trained: {_fmt(results['best_repeats'])}")
    if results.get("baseline"):
        console.print(f"baseline: {_fmt(results['baseline'])}")
    if "trials" in results:
        states = {}
        for t in results["trials"]:
            states[t["state"]] = states.get(t["state"], 0) + 1
        console.print(
            "trials: "
            + ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items()))
            + f"; study time {results['study_minutes']:.1f} min"
        )
    console.print(
        f"elapsed {results['elapsed_seconds'] / 60:.1f} min; results: {results['results_file']}"
        + (f"; plot: {results['plot']}" if results.get("plot") else "")
    )
    console.print(f"ledger: {results['storage']} (study {results['study']})")
