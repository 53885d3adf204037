"""``diffsearch prompt``: arguments and printing for Stable Diffusion prompt optimisation (DPO-Diff)."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from diffsearch.cli.parser import add_trial_timeout, add_worker_arguments
from diffsearch.cli.progress import best_so_far_bar, finish

from diffsearch.backends.stable_diffusion import DEFAULT_MODEL, MEMORY_SAVERS
from diffsearch.jobs.prompt import TASKS, PromptOptions, run_prompt
from diffsearch.objectives.clip import DEFAULT_CLIP
from diffsearch.objectives.rewards import REWARDS
from diffsearch.searchers.prompt.registry import PROMPT_SEARCHERS
from diffsearch.spaces.prompts import PROMPT_SPACES

DESCRIPTION = (
    """\
Optimise a Stable Diffusion prompt (DPO-Diff, Wang et al., ICML 2024). The default objective is the
spherical CLIP loss between each generated image and your prompt, 2*arcsin(|a/|a| - b/|b||/2)^2 (usually
0.7-1.0 with real CLIP; a change of 0.05 is large).
  --task enhance  finds a negative prompt (antonym / library spaces) or a rewording (synonym space) that
                  makes the images follow your prompt better (lower loss);
  --task attack   finds a rewording with sentence similarity >= 0.9 that makes the model fail (higher loss).
rewards (--reward; higher is better, the search minimises the loss: CLIP's own, or minus the score):
"""
    + "\n".join(f"  {k:16s} {v}" for k, v in REWARDS.descriptions().items())
    + """
spaces:
"""
    + "\n".join(f"  {k:16s} {v}" for k, v in PROMPT_SPACES.descriptions().items())
    + """
searchers:
"""
    + "\n".join(f"  {k:16s} {v.description}" for k, v in PROMPT_SEARCHERS.builtin().items())
    + """
The budget counts full generations (one evaluation = one sampling of --seeds images; a shortcut-gradient
step counts its share). Every evaluated prompt is an Optuna trial in the storage (default: a SQLite file
in --out); rerunning the same command resumes from it.

Weights: --model takes a diffusers pipeline directory or hub id: SD 1.x / 2.x, SDXL, SD3 / 3.5 or FLUX.1
(read from its model_index.json). A negative prompt acts only with classifier-free guidance (--guidance > 1;
FLUX: --true-cfg > 1, twice the cost); without it the negative-prompt spaces are refused and --space
synonym (the positive prompt) works. --clip an open_clip MODEL:TAG,
MODEL:/path/weights.pt or a transformers CLIP directory. 'tiny' (SD), 'tiny-sdxl', 'tiny-sd3',
'tiny-flux' build small random pipelines (tests, demos; tiny-flux needs --size 16).
memory savers (--save-memory, comma-separated):
"""
    + "\n".join(f"  {k:18s} {v}" for k, v in MEMORY_SAVERS.items())
    + """
--reward-model takes PickScore's transformers directory (or hub id) or HPSv2's checkpoint file.

examples:
  diffsearch prompt "a dedicated gardener tending a bonsai" --model tiny --clip tiny --space antonym+library
  diffsearch prompt "a happy old man reading a book" --searcher gpo+es --budget 40 --model ~/sd-v1-4 \\
      --clip ViT-B-32:~/clip/vit_b_32-openai.pt --device cuda --dtype float16 --seeds 3
  diffsearch prompt "a red boat on a calm lake" --model ~/sdxl-base --device cuda --dtype float16 \\
      --steps 30 --save-memory vae-slicing --clip ViT-B-32:~/clip/vit_b_32-openai.pt
  diffsearch prompt "a red boat on a calm lake" --model ~/flux-dev --true-cfg 4 --size 512 --device cuda \\
      --dtype bfloat16 --steps 28 --searcher evolution --clip ViT-B-32:~/clip/vit_b_32-openai.pt
  diffsearch prompt "a red boat on a calm lake" --task attack --space synonym --model tiny --clip tiny
  diffsearch prompt --prompts my_prompts.txt --space antonym+library --model tiny --clip tiny
  diffsearch prompt "a red boat on a calm lake" --reward pickscore --reward-model ~/models/pickscore \\
      --model ~/sd-v1-4 --device cuda
  diffsearch prompt "a red boat on a calm lake" --reward hpsv2 --reward-model ~/models/HPS_v2.1_compressed.pt \\
      --model ~/sd-v1-4 --device cuda
  diffsearch prompt "a red boat on a calm lake" --reward my_rewards:sharpness --searcher evolution --model tiny
"""
)


def add_parser(subparsers, parser_class, formatter, help_text: str) -> None:
    p = subparsers.add_parser("prompt", help=help_text, description=DESCRIPTION, formatter_class=formatter)
    p.add_argument("prompt", nargs="?", help="your prompt (or --prompts FILE)")
    p.add_argument("--prompts", dest="prompts_file", help="a prompt set: one prompt a line; reports mean ± std")
    p.add_argument("--task", default="enhance", help=f"one of: {', '.join(TASKS)}")
    p.add_argument("--space", default="antonym", help=f"one of: {', '.join(PROMPT_SPACES)}")
    p.add_argument("--searcher", default="gpo+es", help=f"one of: {', '.join(PROMPT_SEARCHERS)}")
    p.add_argument("--budget", type=float, default=40, help="full generations to spend (DPO-Diff: 40)")
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="diffusers pipeline (SD 1.x/2.x, SDXL, SD3, FLUX): directory, hub id, or tiny[-sdxl|-sd3|-flux]",
    )
    p.add_argument(
        "--clip",
        default=DEFAULT_CLIP,
        help="open_clip MODEL:TAG or MODEL:/weights.pt, a transformers CLIP directory, or tiny",
    )
    p.add_argument(
        "--reward",
        default="clip",
        help="clip (DPO-Diff's spherical CLIP loss), pickscore, hpsv2, or MODULE:FUNCTION: your "
        "function(images N x 3 x H x W in [0, 1], prompt) -> N scores, higher is better",
    )
    p.add_argument(
        "--reward-model",
        help="pickscore: a transformers CLIPModel + CLIPProcessor directory "
        "(or hub id; default yuvalkirstain/PickScore_v1); hpsv2: the "
        "checkpoint file (HPS_v2.1_compressed.pt)",
    )
    p.add_argument(
        "--reward-arch", help="hpsv2: the open_clip architecture (default ViT-H-14) or a model-config .json file"
    )
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, mps)")
    p.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16 for the pipeline")
    p.add_argument("--save-memory", help=f"comma-separated: {', '.join(MEMORY_SAVERS)}")
    p.add_argument("--size", type=int, help="image height and width (default: the model's own)")
    p.add_argument("--steps", type=int, default=50, help="sampling steps (DPO-Diff: 50 DDIM steps)")
    p.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="classifier-free guidance scale (default: the pipeline's own: SD 7.5 as DPO-Diff, SDXL 5, "
        "SD3 7; FLUX: its distilled guidance, 3.5)",
    )
    p.add_argument(
        "--true-cfg",
        type=float,
        default=1.0,
        help="FLUX: true classifier-free guidance scale; > 1 lets a negative prompt act (two passes a step; 1 = off)",
    )
    p.add_argument("--seeds", type=int, default=1, help="images per evaluation; the loss is their mean")
    p.add_argument("--seed", type=int, default=0, help="first generation seed and the searchers' seed")
    p.add_argument("--k", type=int, default=1, help="shortcut gradient: UNet steps with gradient (DPO-Diff: 1)")
    p.add_argument("--iterations", type=int, default=20, help="GPO gradient iterations (DPO-Diff: 20)")
    p.add_argument("--lexicon", default="wordnet", help="wordnet (offline) or llm")
    p.add_argument(
        "--llm-url", help="OpenAI-compatible API base URL, e.g. http://localhost:8000/v1 (key from OPENAI_API_KEY)"
    )
    p.add_argument("--llm-model", help="model name for --lexicon llm")
    p.add_argument(
        "--word-tokens",
        type=int,
        default=1,
        help="keep substitutes of at most this many CLIP tokens (reference: 1; WordNet's antonyms "
        "are often longer, e.g. 'undedicated')",
    )
    p.add_argument("--lexicon-cache", help="JSON cache of looked-up words (default: ~/.cache/diffsearch/)")
    p.add_argument("--study", help="study name (default: prompt-<task>-<space>-<searcher>-<prompt>)")
    p.add_argument(
        "--storage", help="Optuna storage URL or a journal file ending in .log (default: sqlite file in --out)"
    )
    p.add_argument("--out", help="run directory for results.json and before_after.png (default: runs/<study>)")
    add_worker_arguments(p, "generating a batch's images", "diffsearch worker --device cuda")
    add_trial_timeout(p, "an evaluation (its images and reward)")
    p.add_argument("--json", action="store_true", help="print results.json to stdout instead of tables")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    names = (
        "prompt",
        "prompts_file",
        "task",
        "space",
        "searcher",
        "budget",
        "model",
        "clip",
        "reward",
        "reward_model",
        "reward_arch",
        "device",
        "dtype",
        "steps",
        "guidance",
        "true_cfg",
        "size",
        "save_memory",
        "seeds",
        "seed",
        "k",
        "iterations",
        "lexicon",
        "llm_url",
        "llm_model",
        "lexicon_cache",
        "word_tokens",
        "study",
        "storage",
        "out",
        "workers",
        "heartbeat",
        "trial_timeout",
    )
    options = PromptOptions(**{n: getattr(args, n) for n in names})
    with best_so_far_bar(Console(stderr=True), unit="gen") as update:
        results = run_prompt(options, progress=update, log=lambda m: None)
    return finish(results, args.json, print_summary)


def print_summary(results: dict, console: Console) -> None:
    task = results["options"]["task"]
    loss = results["reward"]["loss"]
    table = Table(title=f"{loss} ({'lower' if task == 'enhance' else 'higher'} is better)")
    for column in ("prompt", "user input", "best", "best prompt / negative prompt"):
        table.add_column(column, justify="right" if column in ("user input", "best") else "left")
    for r in results["prompts"]:
        best = r["best"]
        shown = best["negative"] if results["options"]["space"] != "synonym" else best["positive"]
        fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        table.add_row(
            r["prompt"],
            fmt(r["user_input"]["loss"]),
            fmt(best["loss"]),
            (f"negative: {shown}" if results["options"]["space"] != "synonym" else shown) or "(none)",
        )
    console.print(table)
    s = results["summary"]
    if s["prompts"] > 1 and s["best_loss"]["mean"] is not None:
        console.print(
            f"user input {s['user_input_loss']['mean']:.4f} ± {s['user_input_loss']['std']:.4f}; "
            f"optimised {s['best_loss']['mean']:.4f} ± {s['best_loss']['std']:.4f} "
            f"over {s['prompts']} prompts; improved {s['improved']}"
        )
    console.print(
        f"elapsed {results['elapsed_seconds'] / 60:.1f} min; results: {results['results_file']}"
        + (f"; images: {results['grid']}" if results.get("grid") else "")
    )
    console.print(f"ledger: {results['storage']} (study {results['study']})")
