"""Fewer steps, same images: schedule search on the Fashion-MNIST pipeline and an MNIST UNet.

For each model and NFE (4, 6, 10) every searcher runs ``diffsearch schedule`` (teacher matching on search
seeds 0.., the cheap proxy) and the found schedule is judged with the baselines on generation seeds the
search never saw (from 1,000,000) by FID and KID (Inception-v3, objectives/fid.py) against held-out real
images (Fashion-MNIST's test set for ``--model fashion``, class prompts in turn; MNIST's test set for the
UNet). FID on a few hundred images is biased upwards; values are comparable at equal counts only (KID beside).

    python benchmarks/schedule_search.py [--models fashion,mnist] [--nfe 4,6,10] [--searchers evolution,tpe]
        [--seeds 1] [--budget 30] [--fid-images 50]
        [--full-nfe 6] [--short ddim-leading,ddim-trailing,dpm++,ays]

Writes benchmarks/results/schedule_search.{json,md,png}; finished parts are kept in the .json and skipped
when the script runs again (its runs' ledgers live under the cache directory).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CACHE = Path(os.environ.get("DIFFSEARCH_CACHE", Path.home() / ".cache" / "diffsearch")) / "schedule-bench-clip"


def model_spec(name: str) -> tuple[str, str]:
    """(--model, --reference) of a benchmark model."""
    if name == "fashion":
        return "fashion", "fashion-mnist"
    from schedule_mnist_unet import build  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

    return str(build()), "mnist"


def inception_with_threads(threads: int) -> None:
    """Sampling runs on one thread (small convolutions lose more to thread hand-offs on busy cores than they
    gain); the Inception network's large convolutions get ``threads``."""
    from diffsearch.objectives import fid

    plain = fid.inception_features

    def features(*args, **kwargs):
        kwargs.setdefault("batch_size", 25)  # measured on 2 shared cores: 25 a batch ran faster than 50
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return plain(*args, **kwargs)
        finally:
            torch.set_num_threads(before)

    fid.inception_features = features


def run(args) -> dict:
    from diffsearch.jobs.schedule import Prepared, ScheduleOptions, judge, run_schedule, sampler_rows

    torch.set_num_threads(1)
    inception_with_threads(args.inception_threads)
    started = time.perf_counter()

    path = Path(args.record)
    record = json.loads(path.read_text()) if path.is_file() else {}
    record.setdefault("runs", {})
    record["settings"] = {
        "full_nfe": args.full_nfe,
        "short": args.short,
        "budget": args.budget,
        "fid_images": args.fid_images,
        "search_images": args.search_images,
        "teacher_steps": args.teacher_steps,
        "searchers": args.searchers,
        "seeds": args.seeds,
        "fid_searchers": args.fid_searchers,
        "fid_seeds": args.fid_seeds,
        "fid_budget": args.fid_budget,
        "fid_search_images": args.fid_search_images,
        "threads": f"sampling 1, Inception {args.inception_threads}",
        "machine": "2 CPU cores shared with other work (timings are inflated and noisy)",
    }
    for name in args.models:
        model, reference = model_spec(name)
        if name == "mnist":
            record["mnist_unet"] = json.loads((Path(model) / "training.json").read_text())
        prepared = None
        for nfe in args.nfe:
            key = f"{name}/nfe{nfe}"
            part = record["runs"].setdefault(key, {"rows": {}})

            def options(searcher: str, seed: int, baselines: bool, objective: str = "teacher") -> ScheduleOptions:
                fid = objective == "fid"
                return ScheduleOptions(
                    model=model,
                    nfe=nfe,
                    searcher=searcher,
                    budget=args.fid_budget if fid else args.budget,
                    objective=objective,
                    seed=seed * 1000,
                    search_images=args.fid_search_images if fid else args.search_images,
                    teacher_steps=args.teacher_steps,
                    reference=reference,
                    fid_images=args.fid_images,
                    baselines=baselines,
                    out=str(CACHE / f"{name}-nfe{nfe}-{searcher}-{objective}-s{seed}"),
                )

            if prepared is None:
                prepared = Prepared(options(args.searchers[0], 0, False).resolved())
            full = nfe in args.full_nfe  # every searcher and baseline; elsewhere the first searcher, --short
            missing = [
                n for n in prepared.sampler.baselines(nfe) if n not in part["rows"] and (full or n in args.short)
            ]
            if missing:  # the baselines first: the table has its reference rows before any search ends
                print(f"{key}: baselines {', '.join(missing)}", flush=True)
                o = options(args.searchers[0], 0, True).resolved()
                prepared.options, prepared.search_seeds = o, list(range(0, o.search_images))
                from diffsearch.spaces.schedules import ScheduleSpace

                prepared.space = ScheduleSpace(nfe, prepared.space.solver, prepared.space.model_range)
                rows = sampler_rows(prepared, {}, True)
                for n in missing:  # kept one by one: a stopped run loses at most one row
                    judged, _ = judge(prepared, {n: rows[n]}, lambda m: print(m, flush=True))
                    part["rows"][n] = asdict(judged[0])
                    save(record, path)
            plan = [
                (searcher, seed, "teacher")
                for seed in range(args.seeds)
                for searcher in (args.searchers if full else args.searchers[:1])
            ]
            if full:
                plan += [(s, seed, "fid") for seed in range(args.fid_seeds) for s in args.fid_searchers]
            for searcher, seed, objective in plan:
                row_name = f"{searcher}{', FID objective' if objective == 'fid' else ''} (search seed {seed})"
                if row_name in part["rows"]:
                    continue
                print(f"{key}: {row_name}", flush=True)
                results = run_schedule(
                    options(searcher, seed, False, objective), prepared=prepared, log=lambda m: print(m, flush=True)
                )
                row = results["rows"][0]
                part["rows"][row_name] = {
                    **row,
                    "kind": "searched",
                    "searcher": searcher,
                    "objective": objective,
                    "search_seed": seed,
                    "search_value": results["best"]["search_value"],
                    "search_seconds": round(results["search_seconds"], 1),
                    "trials": results["trials"],
                    "schedule_file": results["schedule_file"],
                    "found": results["best"],
                    "nfe_spent": results["nfe_spent"],
                }
                if nfe == 6 and seed == 0 and objective == "teacher":
                    shutil.copy(results["figure"], RESULTS / f"schedule_search_{name}_nfe6_{searcher}.png")
                save(record, path)
        if name == "fashion" and "reproduction" not in record:
            record["reproduction"] = reproduction_check(record)
            save(record, path)
    record["seconds"] = record.get("seconds", 0) + round(time.perf_counter() - started, 1)
    return record


def reproduction_check(record: dict) -> dict:
    """The NFE-6 schedule found by the first searcher, run by StableDiffusionPipeline(timesteps=...) vs our loop."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    from diffsearch.backends.fashion_sd import PIPELINE_DIR, plain_prompt
    from diffsearch.tasks.schedule_sampler import DPM_OVERRIDES, PipelineSampler
    from diffsearch.backends.stable_diffusion import load_backend
    from diffsearch.spaces.schedules import Schedule

    rows = record["runs"].get("fashion/nfe6", {}).get("rows", {})
    searched = [r for r in rows.values() if r.get("kind") == "searched"]
    if not searched:
        return {}
    schedule = Schedule.from_dict(json.loads(Path(searched[0]["schedule_file"]).read_text()))
    prompts = [plain_prompt(label) for label in range(4)]
    ours = PipelineSampler(load_backend("fashion"), prompts).images(schedule, [0, 1, 2, 3])
    pipe = StableDiffusionPipeline.from_pretrained(
        str(PIPELINE_DIR), safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(
        pipe.scheduler.config, solver_order=schedule.order, **DPM_OVERRIDES
    )
    theirs = pipe(
        prompts,
        timesteps=list(schedule.timesteps),
        output_type="pt",
        generator=[torch.Generator().manual_seed(s) for s in range(4)],
    ).images
    return {"schedule": schedule.to_dict(), "max_abs_pixel_difference": float((ours - theirs).abs().max())}


def merged() -> dict:
    """schedule_search.json with the parts that ran in a process of their own (``--record``) merged in."""
    record = json.loads((RESULTS / "schedule_search.json").read_text())
    for part in sorted(RESULTS.glob("schedule_search_*.partial.json")):
        other = json.loads(part.read_text())
        record["runs"].update(other.get("runs", {}))
        for key in ("mnist_unet", "reproduction"):
            if other.get(key):
                record[key] = other[key]
    return record


def save(record: dict, path: Path) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str))


def report(record: dict) -> None:
    """The Markdown table and the PNG (held-out FID against NFE per sampler and model)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = record["settings"]
    lines = [
        "# Fewer steps, same images: schedule search",
        "",
        f"Generated by `benchmarks/schedule_search.py` on {s['machine']}. Search: teacher matching "
        f"(mean squared pixel distance to the {s['teacher_steps']}-step DPM-Solver++ samples of the same noise) on "
        f"{s['search_images']} search seeds, {s['budget']} trials a search, search seeds 0.. (per search seed "
        f"s: 1000 s ..). Judge: FID / KID (Inception-v3) of {s['fid_images']} images from held-out generation "
        f"seeds (1,000,000 ..) against {s['fid_images']} held-out real images (the test split), and teacher "
        f"matching on the first {s['search_images']} held-out seeds. FID on {s['fid_images']} images is biased "
        "upwards; compare values at equal counts only (KID beside it). Search seeds per searcher: "
        f"{s['seeds']} (one search per searcher and NFE: no spread over search seeds is measured). At NFE "
        f"{', '.join(map(str, s.get('full_nfe', [6])))} every searcher ({', '.join(s['searchers'])}) and every "
        f"baseline is judged; at the other NFE only {s['searchers'][0]} and {', '.join(s.get('short', []))} "
        "(Inception on 2 shared cores ran at about 0.5 images/s, which set these sizes).",
        "",
    ]
    if "mnist_unet" in record:
        m = record["mnist_unet"]
        lines += [
            f"MNIST UNet: `UNet2DModel` of `diffsearch hparams --dataset mnist` (width {m['width']}, "
            f"{m['train_images']} training images, {m['epochs']} epochs, the images space's baseline settings, "
            f"{m['config']['beta_schedule']} betas), trained once by `benchmarks/schedule_mnist_unet.py` in "
            f"{m['seconds'] / 60:.0f} min ({m['note']}).",
            "",
        ]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, model in zip(axes, ("fashion", "mnist")):
        keys = sorted((k for k in record["runs"] if k.startswith(model + "/")), key=lambda k: int(k.split("nfe")[1]))
        if not keys:
            continue
        names = list(dict.fromkeys(n for k in keys for n in record["runs"][k]["rows"]))
        title = (
            "Fashion-MNIST pipeline (`--model fashion`, class prompts, guidance 7.5)"
            if model == "fashion"
            else "MNIST UNet (unconditional)"
        )
        lines += [
            f"## {title}",
            "",
            "Held-out FID (KID) at each NFE; searched rows: the search's own score "
            "(teacher MSE on search seeds) / held-out teacher MSE, and search time.",
            "",
            "| sampler | " + " | ".join(k.split("/")[1].upper() for k in keys) + " |",
            "|---|" + "---|" * len(keys),
        ]
        for n in names:
            cells, xs, ys = [], [], []
            for k in keys:
                r = record["runs"][k]["rows"].get(n)
                if r is None:
                    cells.append("-")
                    continue
                if r.get("error"):
                    cells.append(f"failed ({r['error'][:40]})")
                    continue
                cell = f"**{r['fid']:.1f}** ({r['kid']:.4f})" if r.get("fid") is not None else "-"
                if r.get("kind") == "searched":
                    cell += (
                        f"; search {r['search_value']:.5f} / held-out {r['teacher_mse']:.5f}; "
                        f"{r['search_seconds'] / 60:.1f} min"
                    )
                else:
                    cell += f"; held-out MSE {r['teacher_mse']:.5f}"
                cells.append(cell)
                if r.get("fid") is not None:
                    xs.append(int(k.split("nfe")[1]))
                    ys.append(r["fid"])
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
            ax.plot(xs, ys, marker="o", lw=2.5 if "search seed" in n else 1, label=n)
        lines.append("")
        close = [
            (r["teacher_mse"], r["fid"], n, k)
            for k in keys
            for n, r in record["runs"][k]["rows"].items()
            if r.get("teacher_mse") is not None and r.get("fid") is not None
        ]
        if close:
            mse, fid_value, n, k = min(close)
            lines += [
                f"Closest to the teacher: {n} at {k.split('/')[1].upper()} (held-out teacher MSE {mse:.5f}), "
                f"FID {fid_value:.1f}: about the teacher's own FID. Teacher matching can only be as good as "
                "its teacher; where a baseline's FID is below this, the proxy cannot find it.",
                "",
            ]
        lines += [
            "Search times of 0.0 min: the study was finished in an earlier, stopped run of the script and "
            "the ledger resumed it.",
            "",
        ]
        lines += target_lines(record, model, keys)
        ax.set_title(model)
        ax.set_xlabel("NFE")
        ax.set_ylabel(f"held-out FID ({s['fid_images']} images)")
        ax.legend(fontsize=7)
    if record.get("reproduction"):
        r = record["reproduction"]
        lines += [
            "## Reproduction with diffusers",
            "",
            f"The NFE-6 schedule found on `--model fashion` ({r['schedule']}), passed to "
            "`StableDiffusionPipeline(prompt, timesteps=[...])` with the DPM-Solver++ scheduler line of "
            f"schedule.json: max abs pixel difference to our loop **{r['max_abs_pixel_difference']:.2e}** "
            "(4 images, pixels in 0..1).",
            "",
        ]
    fig.tight_layout()
    fig.savefig(RESULTS / "schedule_search.png", dpi=90)
    (RESULTS / "schedule_search.md").write_text("\n".join(lines) + "\n")


def target_lines(record: dict, model: str, keys: list[str]) -> list[str]:
    """The issue's target, said plainly: at 6 NFE, FID >= 30 % below uniform DDIM and <= DPM-Solver++'s."""
    key = f"{model}/nfe6"
    if key not in keys:
        return []
    rows = record["runs"][key]["rows"]
    searched = {n: r["fid"] for n, r in rows.items() if r.get("kind") == "searched" and r.get("fid") is not None}
    ddim = {n: r["fid"] for n, r in rows.items() if n.startswith("ddim-") and r.get("fid") is not None}
    dpm = rows.get("dpm++", {}).get("fid")
    if not searched or not ddim or dpm is None:
        return []
    best_name, best = min(searched.items(), key=lambda kv: kv[1])
    default = rows.get("ddim-leading", {}).get("fid") if model == "fashion" else None
    out = [
        f"Target at 6 NFE (held-out FID): best searched {best:.1f} ({best_name}); uniform DDIM "
        + ", ".join(f"{n} {v:.1f}" for n, v in ddim.items())
        + f"; DPM-Solver++ default {dpm:.1f}."
    ]
    for n, v in ddim.items():
        out.append(
            f"- vs {n}: {100 * (1 - best / v):.0f} % lower -> target (>= 30 %) "
            f"{'met' if best <= 0.7 * v else 'NOT met'}"
        )
    out.append(
        f"- vs DPM-Solver++ default: {'no worse (met)' if best <= dpm else 'worse (NOT met)'} ({best:.1f} vs {dpm:.1f})"
    )
    mean = float(np.mean(list(searched.values())))
    out.append(
        f"- mean over searched rows {mean:.1f}"
        + (f"; the model's own default sampler (DDIM leading) {default:.1f}" if default is not None else "")
    )
    return out + [""]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="fashion,mnist")
    p.add_argument("--nfe", default="6")
    p.add_argument("--searchers", default="evolution,tpe")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--budget", type=int, default=24)
    p.add_argument("--fid-images", type=int, default=200)
    p.add_argument("--fid-searchers", default="evolution", help="searchers run with --objective fid too ('' for none)")
    p.add_argument("--fid-seeds", type=int, default=1)
    p.add_argument("--fid-budget", type=int, default=12)
    p.add_argument("--fid-search-images", type=int, default=64)
    p.add_argument("--full-nfe", default="6", help="NFE at which every searcher and baseline is judged")
    p.add_argument(
        "--short",
        default="ddim-leading,ddim-trailing,dpm++,ays",
        help="the baselines judged at the other NFE (with the first searcher)",
    )
    p.add_argument("--inception-threads", type=int, default=1)
    p.add_argument("--search-images", type=int, default=16)
    p.add_argument("--teacher-steps", type=int, default=50)
    p.add_argument("--report-only", action="store_true", help="merge the parts and write the report")
    p.add_argument(
        "--record",
        default=str(RESULTS / "schedule_search.json"),
        help="where the finished parts are kept (a model run in a second process: "
        "benchmarks/results/schedule_search_<model>.partial.json, merged by --report-only)",
    )
    a = p.parse_args()
    a.models, a.searchers = a.models.split(","), a.searchers.split(",")
    a.fid_searchers = [x for x in a.fid_searchers.split(",") if x]
    a.nfe = [int(n) for n in a.nfe.split(",")]
    a.full_nfe, a.short = [int(n) for n in a.full_nfe.split(",")], a.short.split(",")
    if a.report_only:
        record = merged()
    else:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        record = run(a)
        save(record, Path(a.record))
        if Path(a.record) != RESULTS / "schedule_search.json":
            return
    report(record)
    print((RESULTS / "schedule_search.md").read_text())


if __name__ == "__main__":
    main()
