"""``diffsearch noise``: arguments and printing for noise search with a verifier."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from diffsearch.backends.stable_diffusion import DEFAULT_MODEL
from diffsearch.cli.parser import add_worker_arguments
from diffsearch.cli.progress import best_so_far_bar, finish
from diffsearch.jobs.noise import NoiseOptions, run_noise
from diffsearch.objectives.clip import DEFAULT_CLIP
from diffsearch.objectives.ensemble import ENSEMBLES
from diffsearch.objectives.rewards import REWARDS
from diffsearch.searchers.noise.registry import NOISE_SEARCHERS
from diffsearch.spaces.noise import NOISE_SPACES

DESCRIPTION = (
    """\
Better images from the same model: search the initial noise (and the sampling path) of a pretrained
pipeline, scored by a verifier (inference-time search, Ma et al., CVPR 2025). Your own image (--seed, or
--latent FILE) is the first candidate; the searcher spends --budget-nfe denoiser evaluations (NFE: one
generation costs steps x passes, classifier-free guidance counting its 2 passes a step); the verifier's
favourite is saved (.pt and .safetensors) with the exact diffusers call that makes it again
(generator= or latents=), a before/after picture and results.json. Judge the result with something the
search did not use: every paper on this warns that the verifier's score can rise while the image does not
get better (verifier hacking).
searchers:
"""
    + "\n".join(f"  {k:12s} {e.description}" for k, e in NOISE_SEARCHERS.builtin().items())
    + """
space:
"""
    + "\n".join(f"  {k:12s} {v}" for k, v in NOISE_SPACES.items())
    + """
verifiers (--reward; several comma-separated make an ensemble, --ensemble rank or zscore):
"""
    + "\n".join(f"  {k:16s} {e.description}" for k, e in REWARDS.items())
    + """

examples:
  diffsearch noise "a photo of a dark sandal" --model fashion --clip fashion --steps 10 \\
      --searcher best-of-n --budget-nfe 320
  diffsearch noise "a red boat on a calm lake" --model ~/sd-v1-5 --clip ViT-B-32:~/clip/vit_b_32-openai.pt \\
      --searcher zero-order --budget-nfe 1600 --device cuda --dtype float16
  diffsearch noise "a red boat" --model tiny --clip tiny --steps 4 --searcher particles --budget-nfe 64
"""
)


def add_parser(subparsers, parser_class, formatter, help_text: str) -> None:
    p = subparsers.add_parser("noise", help=help_text, description=DESCRIPTION, formatter_class=formatter)
    p.add_argument("prompt", nargs="?", help="your prompt (or --prompts FILE)")
    p.add_argument("--prompts", dest="prompts_file", help="a prompt set: one prompt a line")
    p.add_argument(
        "--negative-prompt",
        dest="negative",
        default="",
        help="a negative prompt (e.g. the one `diffsearch prompt` found: prompt search, then noise search)",
    )
    p.add_argument("--searcher", default="best-of-n", help=f"one of: {', '.join(NOISE_SEARCHERS.builtin())}")
    p.add_argument(
        "--budget-nfe", type=int, help="denoiser evaluations to spend, your image included (default: 16 generations)"
    )
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="diffusers pipeline (SD 1.x/2.x, SDXL, SD3, FLUX): directory, hub id, fashion, or tiny[-sdxl|-sd3|-flux]",
    )
    p.add_argument(
        "--clip",
        default=DEFAULT_CLIP,
        help="the CLIP of --reward clip: open_clip MODEL:TAG or "
        "MODEL:/weights.pt, a transformers CLIP directory, fashion, or tiny",
    )
    p.add_argument(
        "--reward",
        default="clip",
        help="verifier: clip, pickscore, hpsv2, MODULE:FUNCTION, or several comma-separated (an ensemble)",
    )
    p.add_argument("--ensemble", default="rank", help=f"how an ensemble compares candidates: {', '.join(ENSEMBLES)}")
    p.add_argument("--reward-model", help="pickscore: transformers directory or hub id; hpsv2: checkpoint file")
    p.add_argument("--reward-arch", help="hpsv2: open_clip architecture (default ViT-H-14) or a config .json")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, mps)")
    p.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16")
    p.add_argument("--size", type=int, help="image height and width (default: the model's own)")
    p.add_argument("--steps", type=int, default=50, help="sampling steps (DDIM on SD / SDXL, Euler on SD3 / FLUX)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance (default: the pipeline's own)")
    p.add_argument("--true-cfg", type=float, default=1.0, help="FLUX: true classifier-free guidance (> 1: 2 passes)")
    p.add_argument("--seed", type=int, default=0, help="your generation seed (your image) and the searcher's seed")
    p.add_argument(
        "--latent", help="your initial latent (.pt or .safetensors, 1 x the model's latent shape) instead of --seed"
    )
    p.add_argument("--neighbours", type=int, default=4, help="zero-order: neighbours per round")
    p.add_argument("--radius", type=float, default=0.5, help="zero-order: neighbour distance per unit variance")
    p.add_argument("--branches", type=int, default=4, help="paths: candidates per kept state at a branching step")
    p.add_argument("--potential", type=float, default=1.0, help="particles: lambda of exp(lambda * z-score)")
    p.add_argument("--lr", type=float, default=0.1, help="gradient: Adam learning rate on the latent")
    p.add_argument("--batch", type=int, default=8, help="images per denoiser batch")
    p.add_argument("--study", help="study name (default: noise-<searcher>-<prompt>)")
    p.add_argument("--storage", help="Optuna storage URL or journal .log (default: sqlite file in --out)")
    p.add_argument("--out", help="run directory (default: runs/<study>)")
    p.add_argument("--json", action="store_true", help="print results.json to stdout instead of tables")
    add_worker_arguments(
        p,
        "generating the images of seeds (yours, best-of-n's, every searcher's left-over generations; moved "
        "latents and paths stay in this process)",
        "diffsearch worker --device cuda",
    )
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    names = (
        "prompt",
        "prompts_file",
        "negative",
        "searcher",
        "budget_nfe",
        "model",
        "clip",
        "reward",
        "ensemble",
        "reward_model",
        "reward_arch",
        "device",
        "dtype",
        "size",
        "steps",
        "guidance",
        "true_cfg",
        "seed",
        "latent",
        "neighbours",
        "radius",
        "branches",
        "potential",
        "lr",
        "batch",
        "study",
        "storage",
        "out",
        "workers",
        "heartbeat",
    )
    options = NoiseOptions(**{n: getattr(args, n) for n in names})
    with best_so_far_bar(Console(stderr=True), unit="NFE") as update:
        results = run_noise(options, progress=update)
    return finish(results, args.json, print_summary)


def print_summary(results: dict, console: Console) -> None:
    names = results["verifier"]
    table = Table(title=f"verifier {', '.join(names)}: minus its loss (higher is better)")
    for column in ("prompt", "your image", "chosen", "chosen noise", "NFE spent / budget", "max |diff| vs diffusers"):
        table.add_column(column)
    for r in results["prompts"]:
        fmt = lambda s: ", ".join(f"{s[n]:.3f}" for n in names)  # noqa: E731
        b = r["best"]
        noise = (
            f"seed {b['seed']}"
            if not b["moved"] and not b["injections"]
            else ("moved latent" if b["moved"] else f"seed {b['seed']}")
            + (f" + noise at steps {b['injections']}" if b["injections"] else "")
        )
        table.add_row(
            r["prompt"],
            fmt(r["user"]["scores"]),
            fmt(b["scores"]),
            noise,
            f"{r['spent_nfe']} / {r['budget_nfe']}",
            f"{b['pipeline_max_abs_diff']:.1e}",
        )
    console.print(table)
    for r in results["prompts"][:3]:
        console.print(f"[bold]make it again with diffusers[/bold] ({r['prompt']}):")
        console.print(r["best"]["diffusers_call"], markup=False, highlight=False, soft_wrap=True)
    console.print(
        f"elapsed {results['elapsed_seconds']:.1f} s; results: {results['results_file']}"
        + (f"; images: {results['grid']}" if results.get("grid") else "")
    )
    console.print(f"ledger: {results['storage']} (study {results['study']})")
