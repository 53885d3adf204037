"""``diffsearch schedule``: arguments and printing for the sampling-schedule search."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from diffsearch.cli.parser import add_trial_timeout, add_worker_arguments
from diffsearch.cli.progress import best_so_far_bar, finish
from diffsearch.jobs.schedule import HELD_OUT_SEED, OBJECTIVES, ScheduleOptions, run_schedule
from diffsearch.searchers.schedule import SCHEDULE_SEARCHERS
from diffsearch.spaces.schedules import SOLVERS

DESCRIPTION = (
    """\
Fewer steps, same images: search the N timesteps (and the solver order) of a short sampler of a pretrained
diffusion model. Every point of the space is a valid schedule (strictly decreasing, inside the model's
training timesteps). Each trial samples --search-images images with one schedule and scores them; the search
starts from the evenly spaced schedule (and Align Your Steps where published). The result is judged beside
the baselines on generation seeds the search never saw (from %d) and, with a reference, by FID and KID
against held-out real images: uniform DDIM (diffusers' leading / trailing / linspace spacing), DPM-Solver++
with its default schedule and with Karras sigmas, Align Your Steps (Sabour et al. 2024; SD 1.x / SDXL noise
schedules).
objectives (--objective):
"""
    % HELD_OUT_SEED
    + "\n".join(f"  {k:10s} {v}" for k, v in OBJECTIVES.items())
    + """
solvers (--solver; all take a custom schedule in diffusers):
"""
    + "\n".join(f"  {k:10s} {v[2]}" for k, v in SOLVERS.items())
    + """
searchers (--searcher):
"""
    + "\n".join(f"  {k:10s} {e.description}" for k, e in SCHEDULE_SEARCHERS.builtin().items())
    + """
--model: 'fashion' (the miniature SD that ships with diffsearch; class prompts, FID against Fashion-MNIST's
test set), a diffusers pipeline directory or hub id of SD 1.x / 2.x, SDXL, SD3 or FLUX (prompts from --prompt
or --prompts, default our prompt set), 'tiny', 'tiny-sdxl', 'tiny-sd3', or an unconditional UNet2DModel
directory (a DDPMPipeline saved with save_pretrained, as diffusers' unconditional training script writes).
Writes schedule.json with the exact diffusers call (pipe(prompt, timesteps=[...]) or sigmas=[...]),
results.json and schedules_nfe<N>.png (schedules and held-out samples). Every evaluation is an Optuna trial
in the storage (default: a SQLite file in --out); rerunning the same command resumes it.

examples:
  diffsearch schedule --model fashion --nfe 6 --searcher evolution --budget 40
  diffsearch schedule --model fashion --nfe 4 --searcher tpe --solver ddim
  diffsearch schedule --model ~/mnist-unet --nfe 10 --searcher gp --reference mnist
  diffsearch schedule --model ~/sd-v1-5 --nfe 8 --prompts my_prompts.txt --device cuda --dtype float16
  diffsearch schedule --model fashion --nfe 6 --objective fid --search-images 200
"""
)


def add_parser(subparsers, parser_class, formatter, help_text: str) -> None:
    p = subparsers.add_parser("schedule", help=help_text, description=DESCRIPTION, formatter_class=formatter)
    p.add_argument(
        "--model",
        default="fashion",
        help="fashion, tiny[-sdxl|-sd3], a pipeline directory / hub id, or a UNet2DModel directory",
    )
    p.add_argument(
        "--nfe",
        type=int,
        default=6,
        help="sampling steps of the short sampler (denoiser evaluations per image, x2 with classifier-free guidance)",
    )
    p.add_argument("--solver", help=f"one of: {', '.join(SOLVERS)} (default: dpm++; euler on flow models)")
    p.add_argument("--searcher", default="evolution", help=f"one of: {', '.join(SCHEDULE_SEARCHERS)}")
    p.add_argument("--budget", type=int, default=40, help="trials (each samples --search-images images)")
    p.add_argument("--objective", default="teacher", help=f"one of: {', '.join(OBJECTIVES)}")
    p.add_argument("--teacher-steps", type=int, default=50, help="steps of the teacher (teacher matching)")
    p.add_argument("--search-images", type=int, default=16, help="images per trial (search seeds --seed ..)")
    p.add_argument("--prompt", help="one prompt for every image (text-to-image models)")
    p.add_argument("--prompts", dest="prompts_file", help="a prompt file, one a line, taken in turn by the seeds")
    p.add_argument("--guidance", type=float, help="classifier-free guidance (default: the pipeline's own)")
    p.add_argument("--size", type=int, help="image height and width (default: the model's own)")
    p.add_argument(
        "--reference",
        help="real images for FID: fashion-mnist, mnist, digits or a folder (20 %% held "
        "out); default: the model's own data where known",
    )
    p.add_argument(
        "--fid-images",
        type=int,
        default=200,
        help="held-out images per FID in the final table (small counts bias FID upwards; compare "
        "at equal counts, KID is printed beside it)",
    )
    p.add_argument("--no-baselines", dest="baselines", action="store_false", help="judge only the found schedule")
    p.add_argument("--seed", type=int, default=0, help="first search seed and the searcher's seed")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, mps)")
    p.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16 for a pipeline")
    p.add_argument("--study", help="study name (default: schedule-<model>-nfe<N>-<searcher>-<objective>)")
    p.add_argument("--storage", help="Optuna storage URL or a journal file ending in .log (default: sqlite in --out)")
    p.add_argument("--out", help="run directory (default: runs/<study>)")
    add_worker_arguments(p, "sampling trials")
    add_trial_timeout(p, "a sampling trial (its search images and score)")
    p.add_argument("--json", action="store_true", help="print results.json to stdout instead of tables")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    names = ScheduleOptions.__dataclass_fields__
    options = ScheduleOptions(**{n: getattr(args, n) for n in names if hasattr(args, n)})
    with best_so_far_bar(Console(stderr=True)) as update:
        results = run_schedule(options, progress=update)
    return finish(results, args.json, print_summary)


def print_summary(results: dict, console: Console) -> None:
    o = results["options"]
    held = results["held_out"]
    title = (
        f"{o['model']}, {o['nfe']} steps: held-out seeds ({held['images']} images from seed "
        f"{held['seeds_from']})"
        + (f", FID / KID against {held['reference']}'s held-out images" if held["reference"] else "")
    )
    table = Table(title=title)
    for column in ("sampler", "order", "FID", "KID", "teacher MSE", "timesteps"):
        table.add_column(column, justify="left" if column in ("sampler", "timesteps") else "right")
    fmt = lambda v, d: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    for r in results["rows"]:
        steps = ", ".join(f"{t:g}" for t in r["schedule"])
        table.add_row(
            r["name"], str(r["order"] or "-"), fmt(r["fid"], 1), fmt(r["kid"], 4), fmt(r["teacher_mse"], 5), steps
        )
    console.print(table)
    best = results["best"]
    console.print(
        f"search: {results['trials']} trials, {results['search_seconds'] / 60:.1f} min, objective "
        f"{o['objective']} {best['search_value']:.5f} (search seeds); schedule: {results['schedule_file']}"
    )
    console.print("reproduce with diffusers:")
    # unwrapped and literal (as the noise job prints its call): a narrow terminal must not break the code
    console.print(results["call"], markup=False, highlight=False, soft_wrap=True)
    console.print(f"picture: {results['figure']}; results: {results['results_file']}")
    console.print(f"ledger: {results['storage']} (study {results['study']})")
