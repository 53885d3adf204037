"""Prompt testbed on the Fashion-MNIST Stable Diffusion (``--model fashion``): every prompt searcher x space
of DPO-Diff (Wang et al., ICML 2024) at equal budget, judged on held-out generation seeds.

The search minimises the judge CLIP's loss (``--clip fashion``) on its generation seeds (0, 1, ...).
Each best prompt pair is then generated again on held-out seeds (1000, 1001, ...) and judged by:

- the judge-CLIP loss (the search's objective, on new images);
- the judge classifier (a CNN trained on real Fashion-MNIST, never seen by the search): accuracy = the
  fraction of held-out images classified as the asked class;
- the pixel attributes asked ("dark" / "bright", "small" / "large"): an image is right when its measured
  brightness or size is on the asked side of its class's median on real images; only prompts that ask;
- classifier + attributes: the fraction of images with the class and every asked attribute right.

Mean +- std over prompts; each searcher x space against the user input (no negative prompt) with paired
tests over prompts (Wilcoxon signed-rank, paired t). A space with no slot for a prompt (no antonym in it)
leaves the user input: such cells count as the user input and are listed.

The attack (synonym space, sentence similarity >= 0.9, the job's ``--task attack``) maximises the loss;
it succeeds on a prompt when the judge classifier found the asked class in most held-out images of the
user input and no longer does in most of the attacked prompt's.

The budget counts full generations as the job does (an evaluation of --seeds images costs 1, a
shortcut-gradient step its share). Cells (prompt, searcher, space) are written to the JSON as they
finish; a rerun with the same settings skips them.

    nice -n 10 python benchmarks/prompt_testbed.py --quick                      # a few minutes: it works
    nice -n 10 python benchmarks/prompt_testbed.py                              # the full run (see defaults)
    python benchmarks/prompt_testbed.py --model ~/pilot/pipeline --prompts 10 --searchers gpo+es,random
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import optuna
import torch

from diffsearch.backends import fashion_sd as fs
from diffsearch.errors import UsageError
from diffsearch.jobs.prompt import Models, PromptOptions, optimise_prompt
from diffsearch.objectives.clip import ClipObjective
from diffsearch.searchers.prompt_registry import PROMPT_SEARCHERS
from diffsearch.spaces.prompts import PROMPT_SPACES

RESULTS = Path(__file__).parent / "results"
SPACES = ("antonym", "library", "antonym+library", "sister")
HELD_OUT_FIRST_SEED = 1000
# Defaults sized for the full grid in 45-55 min on 2 CPU cores with the shipped pipeline: a generation of 2
# images takes 0.37 s at 10 DDIM steps (0.85 s at 20), 8 held-out images 0.7 s; a cell (7 generations, its
# held-out judging, bookkeeping) took 4.4 s on average over 400 cells, and the 40 prompts make ~760 cells
# (16 per prompt, fewer where the antonym space is empty, and 4 attacks). At 10 steps the judge classifier
# still finds the class of all 60 plain-prompt test images, as at 20 steps.
DEFAULTS = {"prompts": 40, "budget": 6, "steps": 10, "seeds": 2, "heldout_seeds": 8}
QUICK = {"prompts": 2, "budget": 3, "steps": 8, "seeds": 1, "heldout_seeds": 2}
# attribute words of the captions -> the side of the class median asked (fashion_sd.Judge.attribute_sides)
BRIGHTNESS_SIDE = {"dark": 0, "bright": 1, "light": 1}
SIZE_SIDE = {"small": 0, "large": 1, "big": 1}
# WordNet 3.0 synonyms of a class name (lemmas of the same synset) that the captions never use
UNUSED_SYNONYMS = [("jersey", 0, "tee shirt"), ("slipover", 2, "pullover"), ("greatcoat", 4, "overcoat"),
                   ("topcoat", 4, "overcoat"), ("bootie", 9, "bootee")]


@dataclass(frozen=True)
class Case:
    prompt: str
    label: int
    brightness: int | None = None  # asked side, None when not asked
    size: int | None = None
    kind: str = "plain"            # plain / brightness / size / both / synonym


def phrase(words: list[str], name: str) -> str:
    return "a photo of " + fs.article(" ".join(words + [name]))


def prompt_set() -> list[Case]:
    """45 prompts: 4 rounds over the 10 classes (plain, brightness, size, both, the kind rotating with the
    class), each round followed by an unused-synonym prompt. The first N prompts spread over classes and
    kinds, so --prompts N is a fair subset."""
    rounds = []
    for r in range(4):
        cases = []
        for c in range(10):
            kind = ("plain", "brightness", "size", "both")[(c + r) % 4]
            b_word = ("dark", "bright", "light")[(c + r) % 3] if kind in ("brightness", "both") else None
            s_word = ("small", "large", "big")[(c + 2 * r) % 3] if kind in ("size", "both") else None
            words = [w for w in (b_word, s_word) if w]
            cases.append(Case(phrase(words, fs.PLAIN[c]), c, BRIGHTNESS_SIDE.get(b_word), SIZE_SIDE.get(s_word), kind))
        rounds.append(cases)
    synonyms = []
    for i, (word, label, _) in enumerate(UNUSED_SYNONYMS):
        b_word = (None, "dark", None, "bright", None)[i]
        s_word = (None, None, "large", None, "small")[i]
        words = [w for w in (b_word, s_word) if w]
        synonyms.append(Case(phrase(words, word), label, BRIGHTNESS_SIDE.get(b_word), SIZE_SIDE.get(s_word),
                             "synonym"))
    return rounds[0] + synonyms[:1] + rounds[1] + synonyms[1:2] + rounds[2] + synonyms[2:3] + rounds[3] + synonyms[3:]


def check_unused_synonyms() -> None:
    """Each synonym is a lemma of the same WordNet synset as a caption word, and no caption word itself."""
    from diffsearch.datasets.lexicon import wordnet

    used = {name for names in fs.CLASS_NAMES for name in names}
    for word, label, caption_word in UNUSED_SYNONYMS:
        assert word not in used and caption_word in fs.CLASS_NAMES[label], word
        lemmas = {lm.name().replace("_", " ").lower() for s in wordnet().synsets(caption_word.replace(" ", "_"), "n")
                  for lm in s.lemmas() if word in {x.name().lower() for x in s.lemmas()}}
        assert caption_word in lemmas, f"{word} is no WordNet synonym of {caption_word}"


# ---- judging ------------------------------------------------------------------------------------------
class HeldOutJudge:
    """Generates a prompt pair on the held-out seeds and measures it with the judge CLIP, the judge
    classifier and the pixel attributes."""

    def __init__(self, models: Models, clip: ClipObjective, seeds: list[int]):
        self.models, self.clip, self.seeds = models, clip, seeds
        self.judge = fs.Judge()
        self.targets: dict[str, torch.Tensor] = {}

    def images(self, positive: str, negative: str) -> torch.Tensor:
        backend = self.models.backend
        with torch.no_grad():
            return backend.generate(backend.encode([positive]), backend.encode([negative]), self.seeds)

    def measure(self, case: Case, positive: str, negative: str) -> dict:
        images = self.images(positive, negative)
        if case.prompt not in self.targets:
            self.targets[case.prompt] = self.clip.text_features([case.prompt])
        loss = self.clip.loss(images, self.targets[case.prompt]).detach().float()
        labels = np.full(len(images), case.label)
        right_class = self.judge.classify(images) == labels
        bright, size = self.judge.attribute_sides(images, labels)
        asked = [(sides == want) for sides, want in ((bright, case.brightness), (size, case.size)) if want is not None]
        all_right = right_class & np.all(asked, axis=0) if asked else right_class
        return {"loss": float(loss.mean()), "accuracy": float(right_class.mean()),
                "attribute_accuracy": float(np.mean(asked)) if asked else None,
                "all_right": float(all_right.mean())}


# ---- one cell -----------------------------------------------------------------------------------------
def search_cell(base: PromptOptions, models: Models, storage, case: Case, searcher: str, space: str,
                task: str, judge: HeldOutJudge, name: str) -> dict:
    o = replace(base, prompt=case.prompt, searcher=searcher, space=space, task=task)
    start, cpu = time.perf_counter(), time.process_time()
    try:
        record, search_task = optimise_prompt(o, models, case.prompt, storage, name)
    except UsageError as exc:  # the space has no slot for this prompt: the user input stays
        if "is empty" not in str(exc):
            raise
        return {"empty": str(exc), "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu}
    best = record["best"]
    held_out = judge.measure(case, best["positive"], best["negative"])
    return {"positive": best["positive"], "negative": best["negative"], "search_loss": best["loss"],
            "search_user_loss": record["user_input"]["loss"], "similarity": best.get("similarity"),
            "spent": search_task.spent, "evaluations": len(search_task.seen),
            "gradient_steps": len(record["gradient_steps"]), "seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu, "held_out": held_out}


# ---- summary ------------------------------------------------------------------------------------------
METRICS = (("loss", "judge-CLIP loss"), ("accuracy", "classifier acc."), ("attribute_accuracy", "attribute acc."),
           ("all_right", "class + attributes"))


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.3f}"


def paired_tests(after: list[float], before: list[float]) -> tuple[float | None, float | None]:
    """(Wilcoxon signed-rank p, paired t p), two-sided; None where the differences are all zero."""
    from scipy import stats

    diffs = np.asarray(after) - np.asarray(before)
    if len(diffs) < 2 or np.allclose(diffs, 0):
        return None, None
    wilcoxon = stats.wilcoxon(after, before).pvalue
    t = stats.ttest_rel(after, before).pvalue
    return float(wilcoxon), (float(t) if math.isfinite(t) else None)


def fmt_p(p: float | None) -> str:
    return "-" if p is None else f"{p:.3f}"


def held_out_of(cells: dict, users: dict, case: Case, key: str) -> dict | None:
    cell = cells.get(key)
    if cell is None:
        return None
    return users[case.prompt] if "empty" in cell else cell["held_out"]


def summarise(cases: list[Case], cells: dict, users: dict, args, seconds_per_search: float | None) -> list[str]:
    lines = [f"# Prompt testbed: DPO-Diff searchers x spaces on `--model {args.model}`", "",
             f"Judged on {args.heldout_seeds} held-out generation seeds ({HELD_OUT_FIRST_SEED}..), searched on "
             f"{args.seeds} ({args.seed}..) with the judge CLIP (`--clip {args.clip}`); budget {args.budget:g} full "
             f"generations per search, {args.steps} DDIM steps, guidance {args.guidance}; {len(cases)} prompts "
             f"({sum(c.kind == 'synonym' for c in cases)} with WordNet synonyms the captions never used).", ""]
    if seconds_per_search is not None:
        total = sum(cell.get("seconds", 0.0) for cell in cells.values())
        lines += [f"Mean wall time of one search (with its held-out judging): {seconds_per_search:.1f} s; all "
                  f"{len(cells)} cells: {total / 60:.1f} min.", ""]
    lines += ["Mean ± std over prompts. p: paired tests against the user input over the same prompts "
              "(W: Wilcoxon signed-rank, t: paired t; - where nothing changed). Loss: lower is better.", "",
              "| searcher | space | prompts | empty | "
              + " | ".join(f"{label} | p W / t" for _, label in METRICS) + " |",
              "|---|---|---|---|" + "---|---|" * len(METRICS)]
    measured = [c for c in cases if c.prompt in users]
    lines.append(f"| user input | (no negative) | {len(measured)} | |" + "".join(
        f" {mean_std([users[c.prompt][m] for c in measured if users[c.prompt][m] is not None])} | |"
        for m, _ in METRICS))
    for searcher in args.searchers:
        for space in args.spaces:
            pairs = [(c, held_out_of(cells, users, c, cell_key(c, searcher, space))) for c in cases]
            pairs = [(c, h) for c, h in pairs if h is not None and c.prompt in users]
            if not pairs:
                continue
            empty = sum("empty" in cells[cell_key(c, searcher, space)] for c, _ in pairs)
            row = f"| {searcher} | {space} | {len(pairs)} | {empty} |"
            for metric, _ in METRICS:
                both = [(h[metric], users[c.prompt][metric]) for c, h in pairs if h[metric] is not None]
                after, before = [a for a, _ in both], [b for _, b in both]
                w, t = paired_tests(after, before)
                row += f" {mean_std(after)} | {fmt_p(w)} / {fmt_p(t)} |"
            lines.append(row)
    attack = [(c, cells.get(cell_key(c, s, "attack")), s) for s in args.searchers for c in cases]
    attack = [(c, cell, s) for c, cell, s in attack if cell is not None and c.prompt in users]
    if attack:
        lines += ["", "## Attack (synonym space, sentence similarity >= 0.9, loss maximised)", "",
                  "Success: the classifier found the asked class in most held-out images of the user input "
                  "and no longer does in most of the attacked prompt's. Attackable: prompts whose user input "
                  "the classifier recognised.", "",
                  "| searcher | prompts | no synonym | attackable | successes | success rate "
                  "| accuracy user -> attacked | loss user -> attacked |", "|---|---|---|---|---|---|---|---|"]
        for searcher in args.searchers:
            mine = [(c, cell) for c, cell, s in attack if s == searcher]
            if not mine:
                continue
            empty = sum("empty" in cell for _, cell in mine)
            done = [(c, cell["held_out"]) for c, cell in mine if "empty" not in cell]
            attackable = [(c, h) for c, h in done if users[c.prompt]["accuracy"] >= 0.5]
            wins = sum(h["accuracy"] < 0.5 for _, h in attackable)
            rate = f"{wins / len(attackable):.0%}" if attackable else "-"
            acc = (f"{statistics.fmean(users[c.prompt]['accuracy'] for c, _ in done):.3f} -> "
                   f"{statistics.fmean(h['accuracy'] for _, h in done):.3f}") if done else "-"
            loss = (f"{statistics.fmean(users[c.prompt]['loss'] for c, _ in done):.3f} -> "
                    f"{statistics.fmean(h['loss'] for _, h in done):.3f}") if done else "-"
            lines.append(f"| {searcher} | {len(mine)} | {empty} | {len(attackable)} | {wins} | {rate} | {acc} "
                         f"| {loss} |")
    lines += ["", f"command: python benchmarks/prompt_testbed.py {' '.join(sys.argv[1:])}"]
    return lines


def cell_key(case: Case, searcher: str, space: str) -> str:
    return f"{case.prompt} | {searcher} | {space}"


# ---- grid ---------------------------------------------------------------------------------------------
def grid(cases: list[Case], cells: dict, judge: HeldOutJudge, args, path: Path, n: int = 3) -> str | None:
    """User input vs the best negative prompt of each space (first searcher of --searchers that has it) for
    the first ``n`` prompts that ask for attributes, on the held-out seeds."""
    from diffsearch.image_grid import image_grid

    rows = []
    for case in [c for c in cases if c.kind != "plain"][:n]:
        variants = [("user input", case.prompt, "")]
        for space in args.spaces:
            for searcher in args.searchers:
                cell = cells.get(cell_key(case, searcher, space))
                if cell is not None and "empty" not in cell:
                    variants.append((f"{searcher}, {space}", cell["positive"], cell["negative"]))
                    break
        for label, positive, negative in variants:
            images = judge.images(positive, negative)[:6].float().cpu().permute(0, 2, 3, 1).numpy()
            rows.append((f"{label}: {positive}" + (f"\nnegative: {negative}" if negative else ""), images))
    if not rows:
        return None
    image_grid(rows, path, title=f"prompt testbed, {args.model}: held-out seeds, user input vs best negative prompt")
    return str(path)


# ---- main ---------------------------------------------------------------------------------------------
def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="fashion", help="'fashion' or a pipeline directory (e.g. a pilot build)")
    p.add_argument("--clip", default="fashion", help="the search's CLIP (the judge CLIP by default)")
    p.add_argument("--prompts", type=int, help=f"first N of the 45 prompts (default {DEFAULTS['prompts']})")
    p.add_argument("--budget", type=float, help=f"full generations per search (default {DEFAULTS['budget']})")
    p.add_argument("--steps", type=int, help=f"DDIM steps (default {DEFAULTS['steps']})")
    p.add_argument("--seeds", type=int, help=f"generation seeds of the search (default {DEFAULTS['seeds']})")
    p.add_argument("--heldout-seeds", type=int, help=f"held-out generation seeds (default {DEFAULTS['heldout_seeds']})")
    p.add_argument("--searchers", default=",".join(PROMPT_SEARCHERS))
    p.add_argument("--spaces", default=",".join(SPACES))
    p.add_argument("--no-attack", action="store_true", help="skip the synonym-space attack")
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--seed", type=int, default=0, help="searcher seed and first search generation seed")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true",
                   help=f"check it works: {QUICK['prompts']} prompts, budget {QUICK['budget']}, {QUICK['steps']} steps "
                        "(results to prompt_testbed_quick.*)")
    p.add_argument("--out", help="output stem (default benchmarks/results/prompt_testbed)")
    args = p.parse_args(argv)
    chosen = QUICK if args.quick else DEFAULTS
    for name, value in chosen.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.out = args.out or str(RESULTS / ("prompt_testbed_quick" if args.quick else "prompt_testbed"))
    args.searchers = [s.strip() for s in args.searchers.split(",") if s.strip()]
    args.spaces = [s.strip() for s in args.spaces.split(",") if s.strip()]
    for s in args.searchers:
        if s not in PROMPT_SEARCHERS:
            raise UsageError(f"unknown searcher {s!r} in --searchers; known: {', '.join(PROMPT_SEARCHERS)}")
    for s in args.spaces:
        if s not in PROMPT_SPACES or s == "synonym":
            raise UsageError(f"unknown space {s!r} in --spaces; known: {', '.join(SPACES)} (the synonym space "
                             "is the attack's)")
    for name in ("prompts", "steps", "seeds", "heldout_seeds"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if args.budget < 1:
        raise UsageError("--budget must be at least 1 (full generations)")
    if args.prompts > len(prompt_set()):
        raise UsageError(f"--prompts {args.prompts}: the set has {len(prompt_set())}")
    return args


SETTINGS = ("model", "clip", "budget", "steps", "seeds", "heldout_seeds", "guidance", "seed")


def load_results(path: Path, args) -> dict:
    """The JSON of an earlier run with the same settings (its cells are skipped), or a fresh one."""
    settings = {k: getattr(args, k) for k in SETTINGS}
    if path.is_file():
        data = json.loads(path.read_text())
        if data.get("settings") != settings:
            changed = [k for k in SETTINGS if data.get("settings", {}).get(k) != settings[k]]
            raise UsageError(f"{path} holds a run with other settings ({', '.join(changed)}); give --out "
                             "elsewhere or delete it to start again")
        return data
    return {"settings": settings, "users": {}, "cells": {}}


def save(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)  # a run killed while writing leaves the previous file whole


def run(args) -> int:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    check_unused_synonyms()
    cases = prompt_set()[: args.prompts]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path = Path(str(out) + ".json")
    data = load_results(json_path, args)
    attack = not args.no_attack
    base = PromptOptions(prompt=cases[0].prompt, model=args.model, clip=args.clip, device=args.device,
                         steps=args.steps, guidance=args.guidance, budget=args.budget, seeds=args.seeds,
                         seed=args.seed, task="attack" if attack else "enhance", out=str(out.parent),
                         storage="sqlite:///:memory:")
    models = Models(base)  # with the sentence model when the attack runs
    judge = HeldOutJudge(models, ClipObjective(args.clip, args.device, args.seed), list(range(HELD_OUT_FIRST_SEED, HELD_OUT_FIRST_SEED + args.heldout_seeds)))
    storage = optuna.storages.InMemoryStorage()
    for case in cases:
        if case.prompt not in data["users"]:
            data["users"][case.prompt] = judge.measure(case, case.prompt, "")
            save(json_path, data)
    jobs = [(c, s, sp, "enhance") for c in cases for s in args.searchers for sp in args.spaces]
    jobs += [(c, s, "synonym", "attack") for c in cases for s in args.searchers] if attack else []
    todo = [j for j in jobs if cell_key(j[0], j[1], j[2] if j[3] == "enhance" else "attack") not in data["cells"]]
    print(f"{len(jobs) - len(todo)} of {len(jobs)} cells already in {json_path}; {len(todo)} to run", flush=True)
    for i, (case, searcher, space, task) in enumerate(todo):
        key = cell_key(case, searcher, space if task == "enhance" else "attack")
        cell = search_cell(base, models, storage, case, searcher, space, task, judge, f"cell-{len(data['cells'])}")
        data["cells"][key] = {**cell, "label": case.label, "kind": case.kind}
        save(json_path, data)
        shown = "empty space" if "empty" in cell else (
            f"held-out acc {data['users'][case.prompt]['accuracy']:.2f} -> {cell['held_out']['accuracy']:.2f}, "
            f"loss {data['users'][case.prompt]['loss']:.3f} -> {cell['held_out']['loss']:.3f}, "
            f"negative {cell['negative']!r}" + (f", positive {cell['positive']!r}" if task == "attack" else ""))
        print(f"[{i + 1}/{len(todo)}] {key}: {shown} ({cell['seconds']:.1f} s)", flush=True)
    searched = [c["seconds"] for c in data["cells"].values() if "empty" not in c]
    seconds = statistics.fmean(searched) if searched else None
    data["grid"] = grid(cases, data["cells"], judge, args, Path(str(out) + ".png"))
    data["summary_settings"] = {**asdict(base), "prompts": len(cases), "heldout_seeds": args.heldout_seeds,
                                "searchers": args.searchers, "spaces": args.spaces, "attack": attack,
                                "mean_seconds_per_search": seconds}
    data["prompts"] = [asdict(c) for c in cases]
    save(json_path, data)
    lines = summarise(cases, data["cells"], data["users"], args, seconds)
    Path(str(out) + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(parse(argv))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
