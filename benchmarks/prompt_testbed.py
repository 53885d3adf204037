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

Hard prompts (``--hard N --pool M``), as DPO-Diff evaluates prompt improvement on prompts the model renders
poorly: a pool of M prompts (classes x brightness / size words x caption templates x class names, WordNet
synonyms the captions never used among them), each user input generated on the search's seeds only (never
the held-out ones, so the choice does not favour prompts that were unlucky on the seeds they are judged on)
and ranked by its judge-CLIP loss there (what a user sees without the classifier); the N with the highest
loss are the prompt set, hardest first. The judge classifier's choice on the same images (most images wrong)
is recorded beside it for comparison, never used.

    nice -n 10 python benchmarks/prompt_testbed.py --quick                      # a few minutes: it works
    nice -n 10 python benchmarks/prompt_testbed.py                              # the full run (see defaults)
    python benchmarks/prompt_testbed.py --model ~/pilot/pipeline --prompts 10 --searchers gpo+es,random
    nice -n 10 python benchmarks/prompt_testbed.py --hard 40 --pool 200 --budget 24 --threads 1 \
        --out benchmarks/results/prompt_testbed_hard                           # the hardest 40 of 200
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
from diffsearch.searchers.prompt.registry import PROMPT_SEARCHERS
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
UNUSED_SYNONYMS = [
    ("jersey", 0, "tee shirt"),
    ("slipover", 2, "pullover"),
    ("greatcoat", 4, "overcoat"),
    ("topcoat", 4, "overcoat"),
    ("bootie", 9, "bootee"),
]


@dataclass(frozen=True)
class Case:
    prompt: str
    label: int
    brightness: int | None = None  # asked side, None when not asked
    size: int | None = None
    kind: str = "plain"  # plain / brightness / size / both / synonym


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
        synonyms.append(Case(phrase(words, word), label, BRIGHTNESS_SIDE.get(b_word), SIZE_SIDE.get(s_word), "synonym"))
    return rounds[0] + synonyms[:1] + rounds[1] + synonyms[1:2] + rounds[2] + synonyms[2:3] + rounds[3] + synonyms[3:]


def check_unused_synonyms() -> None:
    """Each synonym is a lemma of the same WordNet synset as a caption word, and no caption word itself."""
    from diffsearch.datasets.lexicon import wordnet

    used = {name for names in fs.CLASS_NAMES for name in names}
    for word, label, caption_word in UNUSED_SYNONYMS:
        assert word not in used and caption_word in fs.CLASS_NAMES[label], word
        lemmas = {
            lm.name().replace("_", " ").lower()
            for s in wordnet().synsets(caption_word.replace(" ", "_"), "n")
            for lm in s.lemmas()
            if word in {x.name().lower() for x in s.lemmas()}
        }
        assert caption_word in lemmas, f"{word} is no WordNet synonym of {caption_word}"


def prompt_pool(size: int, seed: int) -> list[Case]:
    """``size`` distinct prompts drawn without replacement, the same number per class (the first ``size``
    mod 10 classes get one more): a class name (the captions' names and the unused WordNet synonyms), a
    brightness word or none, a size word or none, a caption template; the same draw for the same seed."""
    import random

    rng = random.Random(seed)
    unused = {label: [w for w, lab, _ in UNUSED_SYNONYMS if lab == label] for label in range(10)}
    per_class = []
    for label in range(10):
        combos = [
            (name, b, sz, t)
            for name in fs.CLASS_NAMES[label] + unused[label]
            for b in (None, "dark", "bright", "light")
            for sz in (None, "small", "large", "big")
            for t in fs.TEMPLATES
        ]
        rng.shuffle(combos)
        per_class.append(combos)
    cases: list[Case] = []
    seen: set[str] = set()
    for i in range(size):
        label = i % 10
        while per_class[label]:
            name, b, sz, template = per_class[label].pop()
            words = [w for w in (b, sz) if w]
            prompt = template.format(fs.article(" ".join(words + [name])))
            if prompt in seen:
                continue
            seen.add(prompt)
            kind = (
                "synonym"
                if name in unused[label]
                else "both"
                if b and sz
                else "brightness"
                if b
                else "size"
                if sz
                else "plain"
            )
            cases.append(Case(prompt, label, BRIGHTNESS_SIDE.get(b), SIZE_SIDE.get(sz), kind))
            break
    return cases


def select_hard(pool: list[Case], measured: dict, n: int) -> tuple[list[Case], list[Case]]:
    """The ``n`` prompts whose user input has the highest judge-CLIP loss on the search's seeds (hardest
    first; ties by pool order), and, for comparison only, the ``n`` the judge classifier finds hardest on
    the same images (lowest class + attribute accuracy, then highest loss)."""
    order = {c.prompt: i for i, c in enumerate(pool)}
    by_clip = sorted(pool, key=lambda c: (-measured[c.prompt]["loss"], order[c.prompt]))[:n]
    by_classifier = sorted(
        pool, key=lambda c: (measured[c.prompt]["all_right"], -measured[c.prompt]["loss"], order[c.prompt])
    )[:n]
    return by_clip, by_classifier


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
        return {
            "loss": float(loss.mean()),
            "accuracy": float(right_class.mean()),
            "attribute_accuracy": float(np.mean(asked)) if asked else None,
            "all_right": float(all_right.mean()),
        }


# ---- one cell -----------------------------------------------------------------------------------------
def search_cell(
    base: PromptOptions,
    models: Models,
    storage,
    case: Case,
    searcher: str,
    space: str,
    task: str,
    judge: HeldOutJudge,
    name: str,
) -> dict:
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
    return {
        "positive": best["positive"],
        "negative": best["negative"],
        "search_loss": best["loss"],
        "search_user_loss": record["user_input"]["loss"],
        "similarity": best.get("similarity"),
        "spent": search_task.spent,
        "evaluations": len(search_task.seen),
        "gradient_steps": len(record["gradient_steps"]),
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu,
        "held_out": held_out,
    }


# ---- summary ------------------------------------------------------------------------------------------
METRICS = (
    ("loss", "judge-CLIP loss"),
    ("accuracy", "classifier acc."),
    ("attribute_accuracy", "attribute acc."),
    ("all_right", "class + attributes"),
)


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


def searcher_lines(cases: list[Case], cells: dict, users: dict, args) -> list[str]:
    """Each pair of searchers on the same space and prompts (the paper's ordering question), held-out seeds."""
    lines = []
    for space in args.spaces:
        for i, a in enumerate(args.searchers):
            for b in args.searchers[i + 1 :]:
                pairs = [
                    (
                        held_out_of(cells, users, c, cell_key(c, a, space)),
                        held_out_of(cells, users, c, cell_key(c, b, space)),
                    )
                    for c in cases
                    if c.prompt in users
                ]
                pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
                if len(pairs) < 2:
                    continue
                row = f"| {a} vs {b} | {space} | {len(pairs)} |"
                for metric in ("loss", "all_right"):
                    xs, ys = [x[metric] for x, _ in pairs], [y[metric] for _, y in pairs]
                    w, t = paired_tests(xs, ys)
                    better = sum((x < y) if metric == "loss" else (x > y) for x, y in zip(xs, ys))
                    worse = sum((x > y) if metric == "loss" else (x < y) for x, y in zip(xs, ys))
                    row += (
                        f" {statistics.fmean(xs) - statistics.fmean(ys):+.3f} | {better} / {worse} | "
                        f"{fmt_p(w)} / {fmt_p(t)} |"
                    )
                lines.append(row)
    if not lines:
        return []
    return (
        [
            "## Searcher against searcher (held-out seeds, paired over prompts)",
            "",
            "Difference of means (first minus second; loss: negative favours the first, class + attributes: "
            "positive does), prompts where the first is better / worse, and p (W / t).",
            "",
            "| searchers | space | prompts | loss diff | better / worse | p | class + attr. diff | better / worse "
            "| p |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        + lines
        + [""]
    )


def detail_lines(cases: list[Case], cells: dict, users: dict, args) -> list[str]:
    """Class + attribute accuracy per prompt where the user input is wrong on some held-out image (a
    description of where the effect is; the prompt set was chosen without these seeds)."""
    wrong = [c for c in cases if c.prompt in users and users[c.prompt]["all_right"] < 1]
    columns = [(s, sp) for s in args.searchers for sp in args.spaces]
    rows = []
    for c in wrong:
        values = [held_out_of(cells, users, c, cell_key(c, s, sp)) for s, sp in columns]
        if all(v is None for v in values):
            continue
        rows.append(
            f"| {c.prompt} | {users[c.prompt]['all_right']:.2f} | "
            + " | ".join("-" if v is None else f"{v['all_right']:.2f}" for v in values)
            + " |"
        )
    if not rows:
        return []
    return (
        [
            "## Prompts the user input gets partly wrong on the held-out seeds",
            "",
            "Class + attributes accuracy on the held-out images, user input then each searcher, space.",
            "",
            "| prompt | user input | " + " | ".join(f"{s}, {sp}" for s, sp in columns) + " |",
            "|---|---|" + "---|" * len(columns),
        ]
        + rows
        + [""]
    )


def selection_lines(data: dict, args) -> list[str]:
    """The hard-prompt set's rule, its pool and what the classifier would have chosen."""
    sel = data.get("selection")
    if not sel:
        return []
    pool, users = data["pool"], data["users"]
    chosen, by_classifier = sel["chosen"], sel["by_classifier"]
    some = [p for p in pool if pool[p]["all_right"] < 1]
    none = [p for p in pool if pool[p]["all_right"] == 0]
    losses = sorted((v["loss"] for v in pool.values()), reverse=True)
    lines = [
        "## Prompt set: the hardest by the user input's judge-CLIP loss",
        "",
        f"Rule: {sel['rule']}",
        "",
        f"Pool: {len(pool)} prompts ({sel['pool_rule']}). Judge-CLIP loss of the user input on the search "
        f"seeds: pool {statistics.fmean(losses):.3f} (max {losses[0]:.3f}, median "
        f"{statistics.median(losses):.3f}); the chosen {len(chosen)} have loss >= "
        f"{min(pool[p]['loss'] for p in chosen):.3f}.",
        "",
        f"On the same search-seed images the judge classifier (class + asked attributes) finds at least one "
        f"image wrong for {len(some)} of the {len(pool)} pool prompts ({len(set(some) & set(chosen))} of them "
        f"among the {len(chosen)} chosen by CLIP loss), every image wrong for {len(none)} "
        f"({len(set(none) & set(chosen))} chosen). A selection by the classifier instead (lowest class + attribute "
        f"accuracy on the search seeds; recorded in the JSON, not searched) would share "
        f"{len(set(chosen) & set(by_classifier))} of its {len(by_classifier)} prompts with it.",
        "",
    ]
    held = [users[p]["all_right"] for p in chosen if p in users]
    if held:
        lines += [
            f"The chosen prompts' user input on the held-out seeds: class + attributes "
            f"{statistics.fmean(held):.3f} (search seeds: {statistics.fmean(pool[p]['all_right'] for p in chosen):.3f}); "
            f"{sum(h < 1 for h in held)} of {len(held)} prompts have at least one wrong held-out image.",
            "",
        ]
    held_clf = [users[p]["all_right"] for p in by_classifier if p in users]
    if held_clf:
        lines += [
            f"The classifier's choice (for comparison, not searched) on the held-out seeds: class + attributes "
            f"{statistics.fmean(held_clf):.3f} (search seeds: "
            f"{statistics.fmean(pool[p]['all_right'] for p in by_classifier):.3f}); "
            f"{sum(h < 1 for h in held_clf)} of {len(held_clf)} prompts have at least one wrong held-out image.",
            "",
        ]
    kinds = {}
    for p in chosen:
        kinds[sel["kinds"][p]] = kinds.get(sel["kinds"][p], 0) + 1
    lines += [
        "Kinds among the chosen: "
        + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
        + "; classes: "
        + ", ".join(f"{fs.PLAIN[c]} {sum(sel['labels'][p] == c for p in chosen)}" for c in range(10))
        + ".",
        "",
    ]
    return lines


def summarise(
    cases: list[Case], cells: dict, users: dict, args, seconds_per_search: float | None, data: dict | None = None
) -> list[str]:
    lines = [
        f"# Prompt testbed: DPO-Diff searchers x spaces on `--model {args.model}`",
        "",
        f"Judged on {args.heldout_seeds} held-out generation seeds ({HELD_OUT_FIRST_SEED}..), searched on "
        f"{args.seeds} ({args.seed}..) with the judge CLIP (`--clip {args.clip}`); budget {args.budget:g} full "
        f"generations per search, {args.steps} DDIM steps, guidance {args.guidance}; {len(cases)} prompts "
        f"({sum(c.kind == 'synonym' for c in cases)} with WordNet synonyms the captions never used"
        + (
            f"; the {len(cases)} hardest of a pool of {args.pool} by the user input's judge-CLIP loss on the "
            "search seeds, see below"
            if args.hard
            else ""
        )
        + ").",
        "",
    ]
    if seconds_per_search is not None:
        mine = [cell for key, cell in cells.items() if key.split(" | ")[0] in {c.prompt for c in cases}]
        total = sum(cell.get("seconds", 0.0) for cell in mine)
        lines += [
            f"Mean wall time of one search (with its held-out judging): {seconds_per_search:.1f} s; all "
            f"{len(mine)} cells: {total / 60:.1f} min.",
            "",
        ]
    lines += [
        "Mean ± std over prompts. p: paired tests against the user input over the same prompts "
        "(W: Wilcoxon signed-rank, t: paired t; - where nothing changed). Loss: lower is better.",
        "",
        "| searcher | space | prompts | empty | " + " | ".join(f"{label} | p W / t" for _, label in METRICS) + " |",
        "|---|---|---|---|" + "---|---|" * len(METRICS),
    ]
    measured = [c for c in cases if c.prompt in users]
    lines.append(
        f"| user input | (no negative) | {len(measured)} | |"
        + "".join(
            f" {mean_std([users[c.prompt][m] for c in measured if users[c.prompt][m] is not None])} | |"
            for m, _ in METRICS
        )
    )
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
        lines += [
            "",
            "## Attack (synonym space, sentence similarity >= 0.9, loss maximised)",
            "",
            "Success: the classifier found the asked class in most held-out images of the user input "
            "and no longer does in most of the attacked prompt's. Attackable: prompts whose user input "
            "the classifier recognised.",
            "",
            "| searcher | prompts | no synonym | attackable | successes | success rate "
            "| accuracy user -> attacked | loss user -> attacked |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for searcher in args.searchers:
            mine = [(c, cell) for c, cell, s in attack if s == searcher]
            if not mine:
                continue
            empty = sum("empty" in cell for _, cell in mine)
            done = [(c, cell["held_out"]) for c, cell in mine if "empty" not in cell]
            attackable = [(c, h) for c, h in done if users[c.prompt]["accuracy"] >= 0.5]
            wins = sum(h["accuracy"] < 0.5 for _, h in attackable)
            rate = f"{wins / len(attackable):.0%}" if attackable else "-"
            acc = (
                (
                    f"{statistics.fmean(users[c.prompt]['accuracy'] for c, _ in done):.3f} -> "
                    f"{statistics.fmean(h['accuracy'] for _, h in done):.3f}"
                )
                if done
                else "-"
            )
            loss = (
                (
                    f"{statistics.fmean(users[c.prompt]['loss'] for c, _ in done):.3f} -> "
                    f"{statistics.fmean(h['loss'] for _, h in done):.3f}"
                )
                if done
                else "-"
            )
            lines.append(
                f"| {searcher} | {len(mine)} | {empty} | {len(attackable)} | {wins} | {rate} | {acc} | {loss} |"
            )
    lines += [""] + searcher_lines(cases, cells, users, args) + detail_lines(cases, cells, users, args)
    lines += selection_lines(data or {}, args)
    lines += [f"command: python benchmarks/prompt_testbed.py {' '.join(sys.argv[1:])}"]
    return lines


def cell_key(case: Case, searcher: str, space: str) -> str:
    return f"{case.prompt} | {searcher} | {space}"


# ---- grid ---------------------------------------------------------------------------------------------
def grid(cases: list[Case], cells: dict, judge: HeldOutJudge, args, path: Path, n: int = 3) -> str | None:
    """User input vs the best negative prompt of each space (first searcher of --searchers that has it) for
    the first ``n`` prompts that ask for attributes, on the held-out seeds."""
    from diffsearch.plots.images import image_grid

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
    p.add_argument(
        "--hard",
        type=int,
        help="prompt set: the N hardest of --pool prompts by the user input's "
        "judge-CLIP loss on the search's seeds (instead of the fixed 45)",
    )
    p.add_argument("--pool", type=int, default=200, help="candidate prompts drawn for --hard (default 200)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--seed", type=int, default=0, help="searcher seed and first search generation seed")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"check it works: {QUICK['prompts']} prompts, budget {QUICK['budget']}, {QUICK['steps']} steps "
        "(results to prompt_testbed_quick.*)",
    )
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
            raise UsageError(
                f"unknown space {s!r} in --spaces; known: {', '.join(SPACES)} (the synonym space is the attack's)"
            )
    for name in ("prompts", "steps", "seeds", "heldout_seeds"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if args.budget < 1:
        raise UsageError("--budget must be at least 1 (full generations)")
    if args.hard is not None:
        if args.hard < 1 or args.pool < args.hard:
            raise UsageError(f"--hard {args.hard} --pool {args.pool}: need 1 <= --hard <= --pool")
        if args.pool > 2000:
            raise UsageError(f"--pool {args.pool}: at most 2000")
        if any(a.startswith("--prompts") for a in (argv if argv is not None else sys.argv[1:])):
            raise UsageError("--prompts picks from the fixed set; with --hard the set is the N hardest of --pool")
    if args.threads is not None and args.threads < 1:
        raise UsageError("--threads must be at least 1")
    if args.prompts > len(prompt_set()):
        raise UsageError(f"--prompts {args.prompts}: the set has {len(prompt_set())}")
    return args


SETTINGS = ("model", "clip", "budget", "steps", "seeds", "heldout_seeds", "guidance", "seed")


def load_results(path: Path, args) -> dict:
    """The JSON of an earlier run with the same settings (its cells are skipped), or a fresh one."""
    # a hard set's identity is its pool: --hard N takes the N hardest, so a smaller N reuses a larger run's cells
    settings = {k: getattr(args, k) for k in SETTINGS + (("pool",) if args.hard else ())}
    if path.is_file():
        data = json.loads(path.read_text())
        if data.get("settings") != settings:
            changed = [k for k in settings if data.get("settings", {}).get(k) != settings[k]]
            raise UsageError(
                f"{path} holds a run with other settings ({', '.join(changed)}); give --out "
                "elsewhere or delete it to start again"
            )
        return data
    return {"settings": settings, "users": {}, "cells": {}}


def save(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)  # a run killed while writing leaves the previous file whole


def hard_prompts(args, models: Models, clip: ClipObjective, data: dict, json_path: Path) -> list[Case]:
    """Measure every pool prompt's user input on the search's seeds (resumable) and keep the hardest."""
    pool = prompt_pool(args.pool, args.seed)
    on_search_seeds = HeldOutJudge(models, clip, list(range(args.seed, args.seed + args.seeds)))
    measured = data.setdefault("pool", {})
    todo = [c for c in pool if c.prompt not in measured]
    start = time.perf_counter()
    for i, case in enumerate(todo):
        models.check_prompt(case.prompt)
        measured[case.prompt] = on_search_seeds.measure(case, case.prompt, "")
        if (i + 1) % 20 == 0 or i + 1 == len(todo):
            save(json_path, data)
            print(
                f"pool: {i + 1}/{len(todo)} user inputs on the search seeds ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    chosen, by_classifier = select_hard(pool, measured, args.hard)
    per_class = str(args.pool // 10) if args.pool % 10 == 0 else f"{args.pool // 10}-{args.pool // 10 + 1}"
    data["selection"] = {
        "rule": (
            f"the {args.hard} prompts of the pool whose user input (no negative prompt) has the highest "
            f"judge-CLIP loss on the search's {args.seeds} generation seeds ({args.seed}..), hardest first; "
            "the held-out seeds are not used to choose"
        ),
        "pool_rule": (
            f"drawn with seed {args.seed}, {per_class} per class: class name "
            f"(the captions' names and {len(UNUSED_SYNONYMS)} unused WordNet synonyms) x brightness word "
            "(none, dark, bright, light) x size word (none, small, large, big) x the "
            f"{len(fs.TEMPLATES)} caption templates"
        ),
        "chosen": [c.prompt for c in chosen],
        "by_classifier": [c.prompt for c in by_classifier],
        "kinds": {c.prompt: c.kind for c in pool},
        "labels": {c.prompt: c.label for c in pool},
        "pool_prompts": [asdict(c) for c in pool],
    }
    save(json_path, data)
    return chosen


def run(args) -> int:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    check_unused_synonyms()
    cases = prompt_set()[: args.prompts]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path = Path(str(out) + ".json")
    data = load_results(json_path, args)
    attack = not args.no_attack
    base = PromptOptions(
        prompt=cases[0].prompt,
        model=args.model,
        clip=args.clip,
        device=args.device,
        steps=args.steps,
        guidance=args.guidance,
        budget=args.budget,
        seeds=args.seeds,
        seed=args.seed,
        task="attack" if attack else "enhance",
        out=str(out.parent),
        storage="sqlite:///:memory:",
    )
    models = Models(base)  # with the sentence model when the attack runs
    judge = HeldOutJudge(
        models,
        ClipObjective(args.clip, args.device, args.seed),
        list(range(HELD_OUT_FIRST_SEED, HELD_OUT_FIRST_SEED + args.heldout_seeds)),
    )
    storage = optuna.storages.InMemoryStorage()
    if args.hard:
        cases = hard_prompts(args, models, judge.clip, data, json_path)
        # the classifier's choice is only described: its user inputs on the held-out seeds, never searched
        by_prompt = {c["prompt"]: Case(**c) for c in data["selection"]["pool_prompts"]}
        extra = [by_prompt[p] for p in data["selection"]["by_classifier"] if p not in data["users"]]
        for case in extra:
            data["users"][case.prompt] = judge.measure(case, case.prompt, "")
        save(json_path, data)
    for case in cases:
        if case.prompt not in data["users"]:
            data["users"][case.prompt] = judge.measure(case, case.prompt, "")
            save(json_path, data)
    # prompt by prompt (its searches, then its attacks): a run stopped early leaves whole prompts
    jobs = [
        job
        for c in cases
        for job in [(c, s, sp, "enhance") for s in args.searchers for sp in args.spaces]
        + ([(c, s, "synonym", "attack") for s in args.searchers] if attack else [])
    ]
    todo = [j for j in jobs if cell_key(j[0], j[1], j[2] if j[3] == "enhance" else "attack") not in data["cells"]]
    print(f"{len(jobs) - len(todo)} of {len(jobs)} cells already in {json_path}; {len(todo)} to run", flush=True)
    for i, (case, searcher, space, task) in enumerate(todo):
        key = cell_key(case, searcher, space if task == "enhance" else "attack")
        cell = search_cell(base, models, storage, case, searcher, space, task, judge, f"cell-{len(data['cells'])}")
        data["cells"][key] = {**cell, "label": case.label, "kind": case.kind}
        save(json_path, data)
        shown = (
            "empty space"
            if "empty" in cell
            else (
                f"held-out acc {data['users'][case.prompt]['accuracy']:.2f} -> {cell['held_out']['accuracy']:.2f}, "
                f"loss {data['users'][case.prompt]['loss']:.3f} -> {cell['held_out']['loss']:.3f}, "
                f"negative {cell['negative']!r}" + (f", positive {cell['positive']!r}" if task == "attack" else "")
            )
        )
        print(f"[{i + 1}/{len(todo)}] {key}: {shown} ({cell['seconds']:.1f} s)", flush=True)
    prompts = {c.prompt for c in cases}
    searched = [c["seconds"] for k, c in data["cells"].items() if "empty" not in c and k.split(" | ")[0] in prompts]
    seconds = statistics.fmean(searched) if searched else None
    png = grid(cases, data["cells"], judge, args, Path(str(out) + ".png"))
    data["grid"] = png and Path(png).name  # beside the JSON: no machine's absolute path in a committed file
    data["summary_settings"] = {
        **asdict(base),
        "out": out.name,
        "prompts": len(cases),
        "heldout_seeds": args.heldout_seeds,
        "searchers": args.searchers,
        "spaces": args.spaces,
        "attack": attack,
        "mean_seconds_per_search": seconds,
    }
    data["prompts"] = [asdict(c) for c in cases]
    save(json_path, data)
    lines = summarise(cases, data["cells"], data["users"], args, seconds, data)
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
