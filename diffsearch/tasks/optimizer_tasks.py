"""Diffusion training tasks that score an update rule (as in ENOS, Wang et al., NeurIPS 2022,
with diffusion in place of CIFAR).

- ``toy2d-<set>`` (search task): the MLP denoiser of ``diffsearch hparams`` (smaller) on a 2-D toy
  set, a few hundred steps; about a second per training run on 2 CPU cores.
- ``digits`` (transfer task): a small diffusers ``UNet2DModel`` on scikit-learn's 8 x 8 digits.

Score = the denoising loss after training, measured on a fixed batch (fixed points, noise and
timesteps) so every rule is judged on the same numbers; or, on the 2-D tasks with ``score="prdc"``,
the PRDC loss (``diffsearch hparams``'s scalar) of 2,000 points sampled from the trained model against
2,000 held-out points. Each rule gets its learning rate from a grid by short proxy runs (on the loss either
way); a run whose loss blows up stops at once.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from diffusers import DDPMScheduler

from diffsearch.errors import UsageError
from diffsearch.ledger.interrupt import stop_point
from diffsearch.optimizers.rules import make_optimizer
from diffsearch.registry import Registry
from diffsearch.tasks.evaluation import RuleEvaluation
from diffsearch.tasks.user_task import UserTrainingTask, is_user_task

LR_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # the reference grid
# half decades: a rule whose best lr falls between two decades is not judged a decade off
LR_GRIDS = {"decade": LR_GRID, "half-decade": (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)}


def parse_lr_grid(text: str) -> tuple[float, ...]:
    """'decade', 'half-decade' or a comma list of positive learning rates ('1e-4,3e-4,1e-3')."""
    if text in LR_GRIDS:
        return LR_GRIDS[text]
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise UsageError(f"an lr grid is {' or '.join(LR_GRIDS)} or a comma list of positive numbers, not {text!r}")
    return tuple(sorted(set(values)))


@dataclass
class RunResult:
    lr: float
    score: float  # final loss on the fixed batch; inf when the run diverged
    curve: list[float]  # loss on the fixed batch at ``curve_every`` steps
    diverged_at: int | None = None
    model: torch.nn.Module | None = field(default=None, repr=False)


@dataclass
class DiffusionTrainingTask:
    name: str
    data: torch.Tensor  # training set, (N, ...) float32
    build_model: Callable[[], torch.nn.Module]
    predict: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]  # (model, noisy, t)
    steps: int = 300
    proxy_steps: int = 100
    batch_size: int = 256
    timesteps: int = 100
    lr_grid: Sequence[float] = LR_GRID
    curve_every: int = 10
    eval_size: int = 1024
    diverge_factor: float = 5.0  # stop when the loss exceeds this x the untrained loss
    score_model: Callable[[torch.nn.Module], float] | None = None  # None: the final fixed-batch loss
    _fixed: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.noise_scheduler = DDPMScheduler(num_train_timesteps=self.timesteps, clip_sample=False)
        gen = torch.Generator().manual_seed(12345)
        idx = torch.randperm(len(self.data), generator=gen)[: self.eval_size]
        x0 = self.data[idx]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, self.timesteps, (len(x0),), generator=gen)
        self._fixed = {"noisy": self.noise_scheduler.add_noise(x0, noise, t), "noise": noise, "t": t}
        self.initial_loss = self._fixed_loss(self._model(0))

    def _model(self, seed: int) -> torch.nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the same initial weights for every rule
            return self.build_model()

    @torch.no_grad()
    def _fixed_loss(self, model: torch.nn.Module) -> float:
        f = self._fixed
        return float(torch.nn.functional.mse_loss(self.predict(model, f["noisy"], f["t"]), f["noise"]))

    def train(
        self, program: Sequence[str] | str, lr: float, steps: int, seed: int, weight_decay: float = 0.0
    ) -> RunResult:
        """Train from ``seed``'s initial weights; stop early once the loss is non-finite or blows up.

        ``program``: a rule's tokens, or the name of a torch baseline (``diffsearch.optimizers``, e.g. "Muon")."""
        model = self._model(seed)
        optimizer = make_optimizer(
            program, model.parameters(), lr=lr, weight_decay=weight_decay, total_steps=steps, seed=seed
        )
        gen = torch.Generator().manual_seed(seed + 1)
        limit = self.diverge_factor * self.initial_loss
        curve = []
        for step in range(1, steps + 1):
            stop_point()
            x0 = self.data[torch.randint(0, len(self.data), (self.batch_size,), generator=gen)]
            noise = torch.randn(x0.shape, generator=gen)
            t = torch.randint(0, self.timesteps, (len(x0),), generator=gen)
            loss = torch.nn.functional.mse_loss(
                self.predict(model, self.noise_scheduler.add_noise(x0, noise, t), t), noise
            )
            value = float(loss.detach())
            if not math.isfinite(value) or value > limit:
                return RunResult(lr, math.inf, curve, diverged_at=step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % self.curve_every == 0 or step == steps:
                curve.append(self._fixed_loss(model))
        score = curve[-1]
        return RunResult(lr, score if math.isfinite(score) and score <= limit else math.inf, curve, model=model)

    def evaluate(self, program: Sequence[str] | str, seed: int = 0, weight_decay: float = 0.0) -> RuleEvaluation:
        """Pick the lr by proxy runs over the grid, then train the full run with it."""
        start = time.perf_counter()
        proxies = [self.train(program, lr, self.proxy_steps, seed, weight_decay) for lr in self.lr_grid]
        grid = {f"{p.lr:g}": p.score for p in proxies}
        best = min(proxies, key=lambda p: p.score)
        if not math.isfinite(best.score):
            return RuleEvaluation(math.nan, math.inf, [], grid, time.perf_counter() - start)
        run = best if self.proxy_steps == self.steps else self.train(program, best.lr, self.steps, seed, weight_decay)
        if self.score_model is None or not math.isfinite(run.score):
            return RuleEvaluation(best.lr, run.score, run.curve, grid, time.perf_counter() - start)
        score = self.score_model(run.model)
        return RuleEvaluation(best.lr, score, run.curve, grid, time.perf_counter() - start, final_loss=run.score)

    @property
    def initial_score(self) -> float:
        """The untrained model's score: what a rule must beat (MCT's score threshold)."""
        if self.score_model is None:
            return self.initial_loss
        if "initial_score" not in self._fixed:
            self._fixed["initial_score"] = self.score_model(self._model(0))
        return self._fixed["initial_score"]

    @torch.no_grad()
    def sample(self, model: torch.nn.Module, n: int, seed: int = 0) -> torch.Tensor:
        """Ancestral DDPM sampling over every training timestep."""
        generator = torch.Generator().manual_seed(seed)
        self.noise_scheduler.set_timesteps(self.timesteps)
        x = torch.randn((n, *self.data.shape[1:]), generator=generator)
        for t in self.noise_scheduler.timesteps:
            eps = self.predict(model, x, torch.full((n,), int(t)))
            x = self.noise_scheduler.step(eps, int(t), x, generator=generator).prev_sample
        return x


# -------------------------------------------------------------------------------------- factories
def toy2d_task(
    dataset: str = "moons",
    steps: int = 300,
    proxy_steps: int = 100,
    n_points: int = 8192,
    width: int = 32,
    blocks: int = 2,
    score: str = "loss",
    prdc_points: int = 2000,
    **kwargs,
) -> DiffusionTrainingTask:
    from diffsearch.backends.mlp_denoiser import MLPDenoiser
    from diffsearch.datasets import TOY_DATASETS, make_toy2d

    if dataset not in TOY_DATASETS:
        raise UsageError(f"unknown toy set {dataset!r}; known: {', '.join(TOY_DATASETS)}")
    points = make_toy2d(dataset, n_points, seed=0)
    mean, std = points.mean(0), points.std(0)
    task = DiffusionTrainingTask(
        f"toy2d-{dataset}",
        torch.from_numpy(((points - mean) / std).astype(np.float32)),
        build_model=lambda: MLPDenoiser(2, width=width, blocks=blocks),
        predict=lambda model, x, t: model(x, t.float() / 100.0),
        steps=steps,
        proxy_steps=proxy_steps,
        **kwargs,
    )
    if score == "prdc":
        from diffsearch.objectives.prdc import prdc, prdc_loss

        held_out = (make_toy2d(dataset, prdc_points, seed=1) - mean) / std  # never trained on

        def prdc_score(model: torch.nn.Module) -> float:
            fake = task.sample(model, prdc_points).numpy()
            return prdc_loss(prdc(held_out, fake)) if np.isfinite(fake).all() else math.inf

        task.score_model = prdc_score
    return task


def digits_task(
    steps: int = 120, proxy_steps: int = 40, channels: tuple[int, int] = (8, 16), **kwargs
) -> DiffusionTrainingTask:
    from diffusers import UNet2DModel
    from sklearn.datasets import load_digits

    images = load_digits().images.astype(np.float32) / 8.0 - 1.0  # 0..16 -> [-1, 1]
    kwargs.setdefault("batch_size", 32)
    kwargs.setdefault("eval_size", 256)
    return DiffusionTrainingTask(
        "digits",
        torch.from_numpy(images[:, None]),
        build_model=lambda: UNet2DModel(
            sample_size=8,
            in_channels=1,
            out_channels=1,
            layers_per_block=1,
            block_out_channels=channels,
            norm_num_groups=4,
            down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"),
        ),
        predict=lambda model, x, t: model(x, t).sample,
        steps=steps,
        proxy_steps=proxy_steps,
        **kwargs,
    )


def mnist_task(
    steps: int = 1200,
    proxy_steps: int = 400,
    width: float = 0.125,
    resolution: int = 16,
    score: str = "loss",
    fid_images: int = 500,
    **kwargs,
) -> DiffusionTrainingTask:
    """The image job's UNet (``make_unet``, attention at the two coarse levels) on MNIST at 16 px: a realistic
    diffusion training (1,200 steps of 64 = 1.5 epochs of 50,000 images; ``scale`` lengthens it), 1,000 DDPM
    timesteps as diffusers' train_unconditional.py. ``score="fid"``: FID of ``fid_images`` DDIM-50 samples of the
    trained model vs the MNIST test set (real Inception); the fixed-batch loss stays in the record."""
    from diffsearch.backends.unet_trainer import TrainedUNet, make_unet
    from diffsearch.datasets.images import load_image_data

    data = load_image_data("mnist", resolution=resolution)
    kwargs.setdefault("batch_size", 64)
    kwargs.setdefault("eval_size", 256)
    kwargs.setdefault("timesteps", 1000)
    task = DiffusionTrainingTask(
        "mnist-unet",
        data.train_tensor(),
        build_model=lambda: make_unet(resolution, 1, width),
        predict=lambda model, x, t: model(x, t).sample,
        steps=steps,
        proxy_steps=proxy_steps,
        **kwargs,
    )
    if score == "fid":
        from diffsearch.objectives.fid import FidReference, inception_features

        reference = FidReference.cached(f"{data.key}-eval-{fid_images}", lambda: data.eval[:fid_images])

        def fid_score(model: torch.nn.Module) -> float:
            images = TrainedUNet(model, task.noise_scheduler, "cpu").sample(
                fid_images, torch.Generator().manual_seed(0)
            )
            return reference.score(inception_features(images))["fid"]

        task.score_model = fid_score
    return task


# A task's value builds it: ``build(scale, score, lr_grid)``; ``scores``: the scores it can be judged by.
TaskBuilder = Callable[[float, str, Sequence[float]], DiffusionTrainingTask]


def _toy2d(dataset: str) -> TaskBuilder:
    return lambda scale, score, lr_grid: toy2d_task(
        dataset,
        steps=max(2, int(300 * scale)),
        proxy_steps=max(1, int(100 * scale)),
        score=score,
        lr_grid=tuple(lr_grid),
    )


TASKS: Registry[TaskBuilder] = Registry("task")
TASKS.register(
    "toy2d-moons",
    _toy2d("moons"),
    "MLP denoiser on 2-D moons, 300 steps (search task, 1-2 s per candidate with its lr grid on 2 cores)",
    scores=("loss", "prdc"),
)
TASKS.register("toy2d-swissroll", _toy2d("swissroll"), "the same on the swiss roll", scores=("loss", "prdc"))
TASKS.register("toy2d-spirals", _toy2d("spirals"), "the same on two spirals", scores=("loss", "prdc"))
TASKS.register(
    "digits",
    lambda scale, score, lr_grid: digits_task(
        steps=max(2, int(120 * scale)), proxy_steps=max(1, int(40 * scale)), lr_grid=tuple(lr_grid)
    ),
    "UNet2DModel (8/16 channels) on scikit-learn's 8x8 digits, 120 steps (transfer task)",
    scores=("loss", "prdc"),
)
TASKS.register(
    "mnist-unet",
    lambda scale, score, lr_grid: mnist_task(
        steps=max(2, int(1200 * scale)), proxy_steps=max(1, int(400 * scale)), score=score, lr_grid=tuple(lr_grid)
    ),
    "the image job's UNet (attention blocks, width 0.125) on MNIST 16 px, 1,200 steps of 64 (1.5 epochs; a "
    "realistic transfer task, minutes per rule on 2 cores)",
    scores=("loss", "fid"),
)

SCORES: Registry[None] = Registry("score")
SCORES.register("loss", None, "denoising loss on a fixed batch after training (every task)")
SCORES.register(
    "prdc", None, "PRDC loss of 2,000 sampled points vs 2,000 held-out ones (2-D tasks; digits keeps the loss)"
)
SCORES.register("fid", None, "FID of 500 DDIM-50 samples vs MNIST test images (mnist-unet only)", needs_images=True)


def make_task(
    name: str, scale: float = 1.0, score: str = "loss", lr_grid: Sequence[float] = LR_GRID
) -> DiffusionTrainingTask | UserTrainingTask:
    """A task by name; ``scale`` multiplies its step counts (smaller for tests, larger on a GPU).

    ``module:factory`` is a task of your own (``diffsearch.tasks.user_task``): it sets its own length and
    score, so ``scale`` and ``score`` do not apply to it.
    """
    if is_user_task(name):
        return UserTrainingTask(name, lr_grid)
    if name not in TASKS:
        raise UsageError(f"unknown task {name!r}; known: {', '.join(TASKS)}, or module:factory for your own")
    SCORES.lookup(score)
    entry = TASKS[name]
    if SCORES[score].can("needs_images") and score not in entry.can("scores"):
        # the other tasks draw no images: refuse rather than score the loss
        with_images = ", ".join(n for n in TASKS if score in TASKS[n].can("scores"))
        takes = " or ".join(s for s in entry.can("scores") if s != "prdc" or name.startswith("toy2d"))
        raise UsageError(f"--score {score} needs images: only {with_images} has them ({name} takes {takes})")
    return entry.value(scale, score, lr_grid)
