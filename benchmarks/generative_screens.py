"""Screens of the generative HPO searcher's selection and generation against the benchmark's default:
variants of one or two changes, run on the 17 tasks of `generative_hpo.py --suite all` for a
few seeds and ranked against the cached random / TPE / GP runs of the same seeds (2 seeds: a screen,
not a result). The default's own runs come from the benchmark's cache, so only the variants run.

Variants (each a subclass of GenerativeHPO, so the searcher itself keeps one code path):
- crn128: candidates ranked with 128 (t, eps) draws shared by every candidate (common random
  numbers) instead of 32 independent draws per candidate: a sharper diffusion classifier;
- crn128local: crn128, and a quarter of the candidates are local moves: a top-5 configuration with
  each coordinate taken from a model sample with probability 0.2;
- subctx: each sample generated given its own random subset of the history as context (sizes as in
  training) instead of the whole history, so I = 1 asks for "better than a random subset": more
  diverse samples; the model still ranks them given the whole history;
- cand16: 16 samples per suggestion instead of 64;
- refit30: 30 fine-tuning steps per trial instead of 60;
- lr3e-4: Adam's learning rate 3e-4 instead of 1e-3 (first fit and fine-tuning);
- subctx16: subctx with 16 samples (the two that helped the synthetic functions, together);
- meta: warm-started (GenerativeSampler's source_studies) from 4 random-search histories of 50 trials on
  each other data set of the task's family (HPO-B's meta-train split, leave the task out): 1,000
  pre-training steps, then half of each fine-tuning's batches from those histories; the synthetic
  functions have no such data set, so there it is the default;
- prior: pre-trained instead on random-search histories on 16 random functions of the task's own
  space (sums of 4 Gaussian bumps on its [0, 1]^d encoding): no data of any real task, only practice at
  finding improvements from a context (the idea behind PFNs' GP-prior pre-training);
- prior-gp: as prior, but the 16 functions are draws from a GP (RBF kernel by random Fourier features,
  each coordinate's lengthscale log-uniform in [0.15, 1.5]), the prior PFNs4BO trains on;
- prior-gp-tpe: prior-gp with TPE histories instead of random search, so the pre-training contexts
  look like those a model-based search gives (clustered near the incumbent);
- prior128: prior on 128 bump functions instead of 16 (PFNs draw a fresh function for every batch; the
  guess tested: with 16 the model learns where a few bumps sit rather than how to find one);
- prior-share0.2: prior with a fifth instead of half of the fine-tuning batches replayed from the bump
  histories, so the model follows the task more closely once it has points of its own;
- prior-subctx16, prior-lr3e-4: prior together with subctx16 or lr3e-4 (each of which helped the
  synthetic functions or NAS-Bench-201, where prior lost or gained least);
- prior-pre300: prior with 300 pre-training steps instead of 1,000 (a lighter imprint of the bumps);
- stall5: the default while the search improves; once the incumbent is 5 trials old, subctx's subset
  contexts (exploration once stalled: the samples pile up around the incumbent,
  generative_collapse.py);
- stall5r: stall5, but once stalled the suggestion is a random one of those samples (the model's pick,
  given the whole history, pulls back towards the incumbent);
- prior-stall5: prior together with stall5 (the prior's samples follow the context more).
- fresh: a new network every trial, trained 300 steps from scratch, instead of fine-tuning one
  network 60 steps a trial (by trial 50 it has had 3,000 steps, and more training makes the samples
  hug the incumbent: the late collapse may be accumulated training, not the history);
- fresh150: fresh with 150 steps (cheaper, and a broader model);
- dropout0.1: dropout 0.1 after each hidden layer of the denoising MLP in training (a regulariser
  against memorising the history), none when sampling;
- thompson0.1, thompson0.3: dropout 0.1 / 0.3 in training, and each suggestion samples and ranks with
  one fixed dropout mask: Thompson sampling from MC dropout's posterior over networks, an exploration
  signal that costs nothing (the late trials collapse onto the incumbent, generative_collapse.py).
  thompson0.3 is the searcher's default since; every variant above it ran without dropout, the
  default of its time (no-dropout, whose runs are the benchmark's generative runs from before);
- meta-thompson: meta with Thompson sampling by dropout (it ranked below meta, so a warm start
  goes without dropout unless its config sets one: GenerativeConfig.dropout=None);
- prior-thompson: prior with Thompson sampling by dropout (it ranked below prior too).

Reference (not a generative variant), for what a warm start has to beat:
- tpe-bests: TPE whose first trials are the best configuration of each of those other data sets (its 4
  histories pooled), the simple transfer a user could do by hand with Optuna's enqueue_trial.

    python benchmarks/generative_screens.py                      # every variant, seeds 0 and 1
    python benchmarks/generative_screens.py --variants cand16 --tasks branin hartmann6
    python benchmarks/generative_screens.py --variants meta tpe-bests prior --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import optuna
import torch
from scipy.stats import rankdata

sys.path.insert(0, str(Path(__file__).parent))
import generative_hpo as bench  # noqa: E402

from diffsearch.searchers import make_sampler

from diffsearch.searchers.hparams import generative_sampler  # noqa: E402
from diffsearch.searchers.hparams.generative import GenerativeConfig, GenerativeHPO, Sampler  # noqa: E402

RESULTS = bench.RESULTS
CACHE = RESULTS / "generative_screens_runs.json"


class SharedDrawsScore(GenerativeHPO):
    """improvement_score with the same 128 (t, eps) draws for every candidate.

    The library's improvement_score, given other draws: where it draws ``score_draws`` independent
    (t, eps) per candidate, this draws ``draws`` once and gives every candidate the same ones (common
    random numbers), so the candidates are compared on equal noise."""

    draws = 128

    def score_noise(self, n, d):
        k = self.draws
        eps = torch.randn((1, k, d), generator=self.generator).expand(n, k, d).reshape(n * k, d)
        t = torch.randint(0, self.config.timesteps, (k,), generator=self.generator).repeat(n)
        return eps, t


class SharedDrawsLocalMoves(SharedDrawsScore):
    """A quarter of the candidates: a top-5 configuration, each coordinate from a sample w.p. 0.2."""

    def generate(self, X, y, n=1, improves=1.0):
        samples = super().generate(X, y, n=n, improves=improves)
        if n < 4:
            return samples
        k = n // 4
        top = np.asarray(X)[np.argsort(-np.asarray(y))[:5]]
        parents = top[self.rng.integers(len(top), size=k)]
        donors = samples[self.rng.integers(n, size=k)]
        local = np.where(self.rng.random(parents.shape) < 0.2, donors, parents).astype(np.float32)
        return np.concatenate([samples[: n - k], local])


class SubsetContexts(GenerativeHPO):
    """Each sample generated given its own random subset of the history (the training Sampler's)."""

    @torch.no_grad()
    def generate(self, X, y, n=1, improves=1.0):
        if n == 1:
            return super().generate(X, y, n=n, improves=improves)
        X = np.asarray(X, dtype=np.float32)
        d = X.shape[1]
        sampler = Sampler(
            X,
            np.asarray(y, dtype=np.float64).reshape(-1),
            self.config.max_context,
            self.rng,
            y_scaling=self.config.y_scaling,
        )
        members, _ = sampler._contexts(n)
        padding = members < 0
        context = np.zeros((n, members.shape[1], d + 1), dtype=np.float32)
        context[..., :d] = np.where(padding[..., None], 0.0, X[members])
        context[..., d] = np.where(padding, 0.0, sampler.y_scaled[members])
        self.network.eval()
        embedding = self.network.context(torch.from_numpy(context), torch.from_numpy(padding))
        flag = torch.full((n,), float(improves))
        schedule = self.denoiser.scheduler
        schedule.set_timesteps(self.config.sample_steps or self.config.timesteps)
        z = torch.randn((n, d), generator=self.generator)
        for t in schedule.timesteps:
            z = self.denoiser(self.network(z, torch.full((n,), int(t)), flag, embedding), int(t), z, self.generator)
        return ((z.clamp(-1.0, 1.0) + 1.0) / 2.0).numpy()


class StallSubsetContexts(SubsetContexts):
    """Whole-history contexts while the search improves; once the incumbent is ``patience`` trials old,
    each sample gets its own random subset (more diverse: "beat a random subset", not "beat the best")."""

    patience = 5

    def stalled(self, y) -> bool:
        return len(y) - 1 - int(np.argmax(y)) >= self.patience  # the history is in trial order

    def generate(self, X, y, n=1, improves=1.0):
        generate = super().generate if self.stalled(y) else functools.partial(GenerativeHPO.generate, self)
        return generate(X, y, n=n, improves=improves)


class StallSubsetSample(StallSubsetContexts):
    """As StallSubsetContexts, but once stalled the suggestion is one of those samples at random (the
    model's score, given the whole history, would pull the pick back towards the incumbent)."""

    def improvement_score(self, candidates, X, y):
        if self.stalled(y):
            return self.rng.random(len(candidates))
        return super().improvement_score(candidates, X, y)


class FreshFit(GenerativeHPO):
    """A new network every trial, trained ``first_fit_steps`` from scratch on the history: never more
    training than the early trials', where the searcher leads (fine-tuning piles up 60 steps a trial,
    and more training makes the samples hug the incumbent)."""

    def _new_network(self, dim, force=False):
        return super()._new_network(dim, force=True)


# The screens before dropout changed the searcher without it: they keep the default of their time.
BEFORE_DROPOUT = {"dropout": 0.0}
VARIANTS = {  # name: (model class, GenerativeConfig fields that differ from the default)
    "crn128": (SharedDrawsScore, BEFORE_DROPOUT),
    "crn128local": (SharedDrawsLocalMoves, BEFORE_DROPOUT),
    "subctx": (SubsetContexts, BEFORE_DROPOUT),
    "cand16": (GenerativeHPO, {**BEFORE_DROPOUT, "candidates": 16}),
    "refit30": (GenerativeHPO, {**BEFORE_DROPOUT, "refit_steps": 30}),
    "lr3e-4": (GenerativeHPO, {**BEFORE_DROPOUT, "lr": 3e-4}),
    "subctx16": (SubsetContexts, {**BEFORE_DROPOUT, "candidates": 16}),
    "meta": (GenerativeHPO, BEFORE_DROPOUT),
    "prior": (GenerativeHPO, {**BEFORE_DROPOUT, "prior_functions": 16}),
    "prior-gp": (GenerativeHPO, BEFORE_DROPOUT),
    "prior-gp-tpe": (GenerativeHPO, BEFORE_DROPOUT),
    "prior128": (GenerativeHPO, {**BEFORE_DROPOUT, "prior_functions": 128}),
    "prior-share0.2": (GenerativeHPO, {**BEFORE_DROPOUT, "prior_functions": 16, "source_share": 0.2}),
    "prior-subctx16": (SubsetContexts, {**BEFORE_DROPOUT, "prior_functions": 16, "candidates": 16}),
    "prior-lr3e-4": (GenerativeHPO, {**BEFORE_DROPOUT, "prior_functions": 16, "lr": 3e-4}),
    "prior-pre300": (GenerativeHPO, {**BEFORE_DROPOUT, "prior_functions": 16, "pretrain_steps": 300}),
    "stall5": (StallSubsetContexts, BEFORE_DROPOUT),
    "stall5r": (StallSubsetSample, BEFORE_DROPOUT),
    "prior-stall5": (StallSubsetContexts, {**BEFORE_DROPOUT, "prior_functions": 16}),
    "fresh": (FreshFit, BEFORE_DROPOUT),
    "fresh150": (FreshFit, {**BEFORE_DROPOUT, "first_fit_steps": 150}),
    "no-dropout": (GenerativeHPO, BEFORE_DROPOUT),  # the default before dropout
    "dropout0.1": (GenerativeHPO, {"dropout": 0.1, "thompson": False}),
    "thompson0.1": (GenerativeHPO, {"dropout": 0.1}),
    "thompson0.3": (GenerativeHPO, {"dropout": 0.3}),  # the default since
    "meta-thompson": (GenerativeHPO, {"dropout": 0.3}),
    "prior-thompson": (GenerativeHPO, {"prior_functions": 16, "dropout": 0.3}),
}
SIBLING_HISTORIES = 4  # random-search histories per other data set of the family


@functools.cache
def sibling_studies(task_name: str, histories: int = SIBLING_HISTORIES, trials: int = 50) -> list[optuna.Study]:
    """Random-search studies on every other data set of the task's family (none for the synthetic
    functions), with seeds of their own, so the target task's runs never see its own data."""
    task = next(t for t in bench.all_tasks("all") if t.name == task_name)
    studies = []
    for sibling in (
        t
        for t in bench.all_tasks("all")
        if t.family == task.family and t.name != task.name and task.family != "synthetic"
    ):
        for h in range(histories):
            study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1000 + h))
            study.optimize(lambda trial: sibling.evaluate(sibling.suggest(trial)), n_trials=trials)
            studies.append(study)
    return studies


def _studies_on_random_functions(
    task_name: str, draw_function, functions: int, trials: int, searcher: str
) -> list[optuna.Study]:
    """``searcher`` histories on random functions of the task's space, each a function of the sampler's
    [0, 1]^d encoding of the configuration that ``draw_function(rng, dim)`` returns."""
    task = next(t for t in bench.all_tasks("all") if t.name == task_name)
    probe = optuna.create_study().ask()
    task.suggest(probe)
    dim = generative_sampler.SpaceCodec(probe.distributions).dim
    rng = np.random.default_rng(2000)
    studies = []
    for _ in range(functions):
        study = optuna.create_study(sampler=make_sampler(searcher, int(rng.integers(1 << 31))))
        function = draw_function(rng, dim)

        def objective(trial, function=function):
            task.suggest(trial)
            return float(function(generative_sampler.SpaceCodec(trial.distributions).encode(trial.params)))

        study.optimize(objective, n_trials=trials)
        studies.append(study)
    return studies


def _gp_sample(rng: np.random.Generator, dim: int, features: int = 256):
    """A draw from a GP with an RBF kernel, by random Fourier features; each coordinate's lengthscale is
    log-uniform in [0.15, 1.5], so some coordinates matter and some hardly do (an ARD prior, as PFNs4BO's)."""
    lengthscales = np.exp(rng.uniform(np.log(0.15), np.log(1.5), dim))
    frequencies = rng.normal(size=(features, dim)) / lengthscales
    phases, weights = rng.uniform(0, 2 * np.pi, features), rng.normal(size=features)
    return lambda x: np.sqrt(2.0 / features) * weights @ np.cos(frequencies @ x + phases)


@functools.cache
def gp_prior_studies(
    task_name: str, searcher: str = "random", functions: int = 16, trials: int = 50
) -> list[optuna.Study]:
    """Random search (or TPE) on 16 GP draws on the task's space."""
    return _studies_on_random_functions(task_name, _gp_sample, functions, trials, searcher)


def run_tpe_with_sibling_bests(task: bench.Task, seed: int, trials: int) -> dict:
    study = optuna.create_study(sampler=make_sampler("tpe", seed))
    sources = sibling_studies(task.name)
    for start in range(0, len(sources), SIBLING_HISTORIES):  # one sibling's histories, pooled
        pooled = [t for source in sources[start : start + SIBLING_HISTORIES] for t in source.trials]
        study.enqueue_trial(min(pooled, key=lambda t: t.value).params, skip_if_exists=True)
    return bench.optimize(study, task, trials)


BASELINES = {"tpe-bests": run_tpe_with_sibling_bests}
SOURCES = {
    "meta": sibling_studies,
    "meta-thompson": sibling_studies,
    "prior-gp": gp_prior_studies,
    "prior-gp-tpe": functools.partial(gp_prior_studies, searcher="tpe"),
}  # the warm-started variants' studies


def run_variant(task: bench.Task, variant: str, seed: int, trials: int) -> dict:
    if variant in BASELINES:
        return BASELINES[variant](task, seed, trials)
    model_class, fields = VARIANTS[variant]
    # the sampler builds its model by this name: the variant's class takes its place for this run
    with mock.patch.object(generative_sampler, "GenerativeHPO", model_class):
        sources = SOURCES[variant](task.name) if variant in SOURCES else ()
        sampler = generative_sampler.GenerativeSampler(
            seed=seed, config=GenerativeConfig(**fields), source_studies=sources
        )
        return bench.optimize(optuna.create_study(sampler=sampler), task, trials)


def table(screens: dict, runs: dict, tasks: list[bench.Task], trials: int) -> str:
    """Per searcher (the default, then each variant): its mean final rank among random / TPE / GP /
    itself and its mean final regret per family, on the task-seed pairs the variants have run."""
    families = sorted({t.family for t in tasks})
    everything = {**runs, **screens}
    screened = [
        (t, s) for t in tasks for s in range(5) if any(f"{t.name}|{v}|{s}" in screens for v in (*VARIANTS, *BASELINES))
    ]
    lines = [
        "| searcher | runs | its rank | GP's rank | TPE's rank | " + " | ".join(families) + " |",
        "|---|" + "---|" * (4 + len(families)),
    ]
    for name in ("generative", *VARIANTS, *BASELINES):
        pairs = [(t, s) for t, s in screened if f"{t.name}|{name}|{s}" in everything]
        if not pairs:
            continue
        ranks: dict[str, list] = {m: [] for m in ("random", "tpe", "gp", name)}
        regrets: dict[str, list] = {f: [] for f in families}
        for task, seed in pairs:
            finals = {m: task.regret_curve(everything[f"{task.name}|{m}|{seed}"], trials)[-1] for m in ranks}
            for m, r in zip(finals, rankdata(list(finals.values()))):
                ranks[m].append(r)
            regrets[task.family].append(finals[name])
        label = "generative (the default)" if name == "generative" else name
        cells = [f"{np.mean(v):.4f}" if v else "-" for v in regrets.values()]
        lines.append(
            f"| {label} | {len(pairs)} | {np.mean(ranks[name]):.2f} | {np.mean(ranks['gp']):.2f} | "
            f"{np.mean(ranks['tpe']):.2f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def head_to_head(
    screens: dict, runs: dict, tasks: list[bench.Task], trials: int, warm: tuple[str, ...] = ("meta", "tpe-bests")
) -> str:
    """One ranking of the cold searchers (random, TPE, GP, the generative default) and the warm-started
    ones together, on the task-seed pairs every warm one has run: mean rank at ``trials`` and mean
    regret per family."""
    everything = {**runs, **screens}
    methods = ("random", "tpe", "gp", "generative", *warm)
    pairs = [(t, s) for t in tasks for s in range(5) if all(f"{t.name}|{m}|{s}" in everything for m in methods)]
    if not pairs:
        return ""
    families = sorted({t.family for t, _ in pairs})
    finals = {m: [t.regret_curve(everything[f"{t.name}|{m}|{s}"], trials)[-1] for t, s in pairs] for m in methods}
    ranks = np.array([rankdata([finals[m][i] for m in methods]) for i in range(len(pairs))]).mean(axis=0)
    lines = [
        f"Cold and warm-started searchers in one ranking ({len(pairs)} task-seed pairs, {len(methods)} "
        "searchers; warm = given the other data sets' histories):",
        "",
        "| searcher | rank | " + " | ".join(families) + " |",
        "|---|---|" + "---|" * len(families),
    ]
    for m, rank in zip(methods, ranks):
        cells = [f"{np.mean([f for f, (t, _) in zip(finals[m], pairs) if t.family == fam]):.4f}" for fam in families]
        lines.append(f"| {m} | {rank:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pick_quality(histories: int = 12) -> str:
    """How well improvement_score picks among the model's 64 samples, on Hartmann-6 histories of 20-48
    points (half uniform, half near the three best of those): the Spearman correlation of the score with
    the true value, and the percentile of the picked sample's true value among the 64 (0.5 = a random
    pick), for the default's 32 independent draws per sample and for draws shared by all samples (the
    searcher without dropout, as it was measured)."""
    from scipy.stats import spearmanr

    scorers = {
        "32 independent draws (the default)": GenerativeHPO.improvement_score,
        "32 shared draws": None,
        "128 shared draws": None,
        "512 shared draws": None,
    }
    results: dict[str, list] = {name: [] for name in scorers}
    rng = np.random.default_rng(1)
    for h in range(histories):
        n = (20, 35, 48)[h % 3]
        X = rng.uniform(size=(n, 6)).astype(np.float32)
        best = X[np.argsort(bench.hartmann6(X))[:3]]
        X[n // 2 :] = np.clip(best[rng.integers(3, size=n - n // 2)] + 0.1 * rng.normal(size=(n - n // 2, 6)), 0, 1)
        y = -bench.hartmann6(X)
        model = GenerativeHPO(seed=h, config=GenerativeConfig(**BEFORE_DROPOUT))  # as measured
        for _ in range(n - 4):  # the first fit and the fine-tunes the sampler would have run
            model.fit(X, y)
        samples = model.generate(X, y, n=64)
        true = -bench.hartmann6(samples)
        for name, scorer in scorers.items():
            if scorer is None:
                shared = SharedDrawsScore(seed=h)
                shared.network, shared.draws = model.network, int(name.split()[0])
                score = shared.improvement_score(samples, X, y)
            else:
                score = scorer(model, samples, X, y)
            results[name].append((spearmanr(score, true)[0], float((true < true[np.argmax(score)]).mean())))
    lines = [
        f"| score ({histories} Hartmann-6 histories, 64 samples each) | Spearman with the true value | "
        "picked sample's percentile |",
        "|---|---|---|",
    ]
    for name, values in results.items():
        values = np.array(values)
        lines.append(f"| {name} | {values[:, 0].mean():.2f} | {values[:, 1].mean():.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        choices=[*VARIANTS, *BASELINES],
        help="variants (and references) to run (default: every variant)",
    )
    parser.add_argument("--tasks", nargs="*", help="only these tasks of the 17 (default: all)")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1],
        help="seeds to run (the benchmark's cache must hold random / TPE / GP runs for them)",
    )
    parser.add_argument(
        "--pick-quality",
        action="store_true",
        help="only measure how well the model's score picks among its samples (Hartmann-6)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if args.pick_quality:
        text = pick_quality()
        (RESULTS / "generative_pick_quality.md").write_text(
            "# How well the generative model picks among its samples\n\n" + text
        )
        print(text)
        return 0
    tasks = bench.all_tasks("all")
    unknown = set(args.tasks or ()) - {t.name for t in tasks}
    if unknown:
        parser.error(f"unknown tasks: {', '.join(sorted(unknown))}")
    runs = json.loads((RESULTS / "generative_hpo_runs.json").read_text())
    missing = [s for s in args.seeds if f"branin|gp|{s}" not in runs]
    if missing:
        parser.error(f"the benchmark's cache has no runs for seeds {missing}: run generative_hpo.py --suite all first")
    for task in (t for t in tasks if not args.tasks or t.name in args.tasks):
        for variant in args.variants:
            for seed in args.seeds:
                screens = json.loads(CACHE.read_text()) if CACHE.exists() else {}
                key = f"{task.name}|{variant}|{seed}"
                if key in screens:
                    continue
                start = time.perf_counter()
                result = run_variant(task, variant, seed, 50)
                print(
                    f"{key}: regret {task.regret(result['incumbent'][-1]):.4f} ({time.perf_counter() - start:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
                bench.add_to_cache(CACHE, key, result)  # other processes may share it
    screens = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    text = (
        "# Generative HPO screens (50 trials; ranks at the last trial among random, TPE, GP and one "
        "generative searcher, on the task-seed pairs the variant has run)\n\nRows with different run counts cover "
        "different task-seed pairs: read each row against the GP and TPE ranks on its own "
        "line (the default's row covers every pair any row has run).\n\n" + table(screens, runs, tasks, 50)
    )
    text += "\n" + head_to_head(screens, runs, tasks, 50)
    (RESULTS / "generative_screens.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
