"""Generative HPO: a diffusion model, trained on the study's history, proposes the next configuration.

A DDPM is trained on triples (x, I, C) drawn from the history H = {(x_i, y_i)}: x is one observed
configuration, C a random subset of H (the context), and I = 1 iff no (x', y') in C has y' > y.
The network sees the noisy x, the timestep, I and an embedding of C from a permutation-invariant
Transformer encoder. To suggest, it denoises Gaussian noise with I = 1 and C = all of H: "a configuration
that beats everything seen so far".

The method as first proposed ("the original method" below; the defaults here add choices of ours,
each marked in ``GenerativeConfig``) names these parts: ``Sampler``, ``NoiseAdder``, ``Network``,
``Loss``, ``Denoiser`` and the inference loop (``GenerativeHPO.generate``). Configurations live in [0, 1]^d
(HPO-B's convention); the model works on z = 2x - 1 in [-1, 1], the DDPM convention.
``GenerativeHPO.observe_and_suggest`` has HPO-B's interface; ``GenerativeSampler`` (generative_sampler.py)
makes it an Optuna sampler for every flat space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy.stats import rankdata
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn


@dataclass
class GenerativeConfig:
    timesteps: int = 1000  # DDPM steps, for training and for the inference loop
    sample_steps: int = (
        0  # reverse steps of the inference loop: 0 = every step (DDPM, the original method); fewer = DDIM
    )
    width: int = 128  # hidden units of the denoising MLP
    context_width: int = 32  # Transformer model width
    context_layers: int = 2
    context_heads: int = 4
    max_context: int = 32  # the largest context subset drawn for training
    batch_size: int = 64
    lr: float = 1e-3
    first_fit_steps: int = 300  # gradient steps the first time the model sees a history
    refit_steps: int = 60  # fine-tuning steps each later call (the history grew by one)
    pretrain_steps: int = 1000  # gradient steps on earlier studies' histories (GenerativeHPO.pretrain), if any
    source_share: float = 0.5  # after pretrain, the share of fine-tuning batches still drawn from those histories
    prior_functions: int = 0  # with no earlier study to pre-train on, pre-train on random search over this many random functions of the space (generative_prior.py); 0 = a cold start (the original method)
    candidates: int = 64  # configurations generated per call; the one the model rates most likely to improve is returned (1: the original method)
    score_draws: int = 32  # (t, eps) draws per candidate when ranking candidates
    guidance: float = 0.0  # classifier-free guidance on I: eps(1) + w (eps(1) - eps(0)); 0 = the original method's
    improve_share: float | None = (
        0.5  # share of I = 1 triples per training batch (None: as p_H draws them, the original method)
    )
    queries_per_context: int = (
        8  # training triples sharing one drawn context (1: every triple its own, the original method)
    )
    novel_only: bool = (
        True  # with a projection onto the space, drop candidates already evaluated (False: the original method)
    )
    y_scaling: str = "rank"  # how the context sees y: "rank" (its quantile in the history) or "minmax"
    dropout: float | None = (
        None  # dropout after each hidden layer of the denoising MLP; None: 0.3 on a cold start, 0 (the original method's network) once pre-trained (pretrain)
    )
    thompson: bool = (
        True  # with dropout, each suggestion samples and ranks with one fixed dropout mask (Thompson sampling)
    )
    losses: list[float] = field(default_factory=list)

    def __post_init__(self):
        if self.improve_share is not None and not 0.0 <= self.improve_share <= 1.0:
            raise ValueError(f"improve_share must lie in [0, 1] (or be None), got {self.improve_share}")
        if self.y_scaling not in Y_SCALINGS:
            raise ValueError(f"y_scaling must be one of {', '.join(Y_SCALINGS)}, got {self.y_scaling!r}")
        if self.prior_functions < 0:
            raise ValueError(f"prior_functions must be >= 0, got {self.prior_functions}")
        if not 0.0 <= self.source_share < 1.0:
            raise ValueError(f"source_share must lie in [0, 1), got {self.source_share}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if not 1 <= self.queries_per_context <= self.batch_size:
            raise ValueError(
                f"queries_per_context must lie in 1..batch_size ({self.batch_size}), got {self.queries_per_context}"
            )


# ----------------------------------------------------------------------------------------- Sampler
class Sampler:
    """Draws training triples (x, I, C) from the history, the original method's p_H: a context C (a uniform
    random subset of 1..max_context points) and a query x from H, with I = 1 iff no point of C beats x.

    ``queries_per_context`` > 1 pairs each drawn context with that many queries (as neural processes
    do): every triple is still distributed as p_H, and the Transformer encodes one context per group
    instead of one per row, which is where a training step spends its time.

    ``improve_share`` (optional) stratifies the batch on I: that share of the groups holds triples with
    I = 1, the rest I = 0. A group's context is resampled from a pool with weight = how many queries it
    gives that label, then its queries are drawn uniformly among those, so p(x, C | I) is exactly p_H's;
    only how often each label is seen changes (I = 1 is about ln(n) / n of p_H).
    """

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        max_context: int,
        rng: np.random.Generator,
        improve_share: float | None = None,
        queries_per_context: int = 1,
        y_scaling: str = "rank",
    ):
        self.X, self.y, self.max_context, self.rng = X, y, max_context, rng
        self.y_scaled = scale_y(y, y_scaling)
        self.improve_share, self.queries = improve_share, queries_per_context

    def _contexts(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """``count`` uniform random subsets: member indices (-1 = padding) and each one's best y."""
        n = len(self.X)
        sizes = self.rng.integers(1, min(n, self.max_context) + 1, size=count)
        members = np.argsort(self.rng.random((count, n)), axis=1)[:, : int(sizes.max())]
        members[np.arange(members.shape[1])[None, :] >= sizes[:, None]] = -1
        return members, np.where(members >= 0, self.y[members], -np.inf).max(axis=1)

    def _queries(self, valid: np.ndarray) -> np.ndarray:
        """For each row of a (groups, n) mask, ``queries`` indices drawn uniformly among its True entries."""
        cumulative = valid.cumsum(axis=1)
        draws = (self.rng.random((len(valid), self.queries)) * cumulative[:, -1:]).astype(np.int64)
        return np.stack([np.searchsorted(row, d, side="right") for row, d in zip(cumulative, draws)])

    def __call__(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        """Return x (B, d), I (B,), contexts (G, m, d + 1) holding [x', y'] rows, their padding mask
        (G, m) and each row's context index (B,), with G = B / queries_per_context."""
        groups = max(1, batch_size // self.queries)
        if self.improve_share is None:
            members, best = self._contexts(groups)
            query = self.rng.integers(len(self.X), size=(groups, self.queries))
            improves = self.y[query] >= best[:, None]
        else:
            pool, pool_best = self._contexts(8 * groups)
            beats = self.y[None, :] >= pool_best[:, None]  # (pool, n): which queries get I = 1
            weights = {label: (beats == label).sum(axis=1).astype(np.float64) for label in (True, False)}
            wanted = int(round(self.improve_share * groups))
            if weights[False].sum() == 0:  # every triple has I = 1 (all y equal, or one point)
                wanted = groups
            parts = []
            for label, count in ((True, wanted), (False, groups - wanted)):
                if count == 0:
                    continue
                weight = weights[label]
                chosen = self.rng.choice(len(pool), size=count, p=weight / weight.sum())
                parts.append(
                    (pool[chosen], self._queries(beats[chosen] == label), np.full((count, self.queries), label))
                )
            members = np.concatenate([part[0] for part in parts])
            query = np.concatenate([part[1] for part in parts])
            improves = np.concatenate([part[2] for part in parts])
        padding = members < 0  # True = padding, Transformer's convention
        d = self.X.shape[1]
        context = np.zeros((len(members), members.shape[1], d + 1), dtype=np.float32)
        context[..., :d] = np.where(padding[..., None], 0.0, self.X[members])
        context[..., d] = np.where(padding, 0.0, self.y_scaled[members])
        group = np.repeat(np.arange(len(members)), self.queries)
        return (
            torch.from_numpy(self.X[query.reshape(-1)].astype(np.float32)),
            torch.from_numpy(improves.reshape(-1).astype(np.float32)),
            torch.from_numpy(context),
            torch.from_numpy(padding),
            torch.from_numpy(group),
        )


Y_SCALINGS = ("rank", "minmax")


def scale_y(y: np.ndarray, how: str) -> np.ndarray:
    """y mapped to [0, 1] for the context, so it sees the shape of the results, not their units.

    "rank": each y's quantile in the history (ties share one), unmoved by outliers: one diverged
    trial (HPOLib's MSE reaches 4e7 where good ones are 1e-4) squeezes every other y to 1 under
    "minmax". Either way I, which only compares y's, is the same.
    """
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if how == "rank":
        scaled = (rankdata(y) - 1) / (len(y) - 1) if len(y) > 1 else np.zeros_like(y)
    else:
        span = float(y.max() - y.min())
        scaled = (y - y.min()) / span if span > 0 else np.zeros_like(y)
    return scaled.astype(np.float32)


# ------------------------------------------------------------------------------ Noise adder, denoiser
class NoiseAdder:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, eps ~ N(0, I) (DDPM's forward process)."""

    def __init__(self, scheduler: DDPMScheduler):
        self.scheduler = scheduler

    def __call__(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.scheduler.add_noise(x0, eps, t)


class Denoiser:
    """One reverse step: mu = (x_t - beta_t / sqrt(1 - abar_t) eps_hat) / sqrt(alpha_t), plus sigma_t z.

    diffusers' DDPMScheduler.step computes exactly this (through the x_0 estimate, clipped to [-1, 1],
    which keeps proposals inside the space). With ``sample_steps`` set, diffusers' DDIMScheduler on the
    same betas takes its place (eta = 0: deterministic steps over a subset of the timesteps).
    """

    def __init__(self, scheduler: DDPMScheduler | DDIMScheduler):
        self.scheduler = scheduler

    def __call__(self, eps_hat: torch.Tensor, t: int, x_t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.scheduler.step(eps_hat, t, x_t, generator=generator).prev_sample


# ----------------------------------------------------------------------------------------- Network
class ContextEncoder(nn.Module):
    """Transformer encoder over the context set, no positional encoding, masked mean pooling:
    a set has no order, so the embedding must not depend on one."""

    def __init__(self, dim: int, width: int, layers: int, heads: int):
        super().__init__()
        self.inp = nn.Linear(dim + 1, width)
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=2 * width, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, context: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.inp(context), src_key_padding_mask=padding)
        keep = (~padding).unsqueeze(-1).float()
        return (h * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)


def timestep_embedding(t: torch.Tensor, dim: int = 32) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class FixableDropout(nn.Module):
    """Dropout whose mask can be held fixed across forward passes. One fixed mask is one sub-network: a
    draw from MC dropout's approximate posterior over networks (Gal and Ghahramani, 2016)."""

    def __init__(self, p: float):
        super().__init__()
        self.p, self.mask = p, None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.mask is not None:
            return h * self.mask
        return nn.functional.dropout(h, self.p, self.training)


COLD_START_DROPOUT = 0.3  # GenerativeConfig.dropout=None on a cold start (docs/generative_hpo.md, item 11)


class Network(nn.Module):
    """eps_hat = f(x_t, t, I, embed(C))."""

    def __init__(self, dim: int, config: GenerativeConfig, dropout: float = 0.0):
        super().__init__()
        self.context = ContextEncoder(dim, config.context_width, config.context_layers, config.context_heads)
        inputs = dim + 32 + 1 + config.context_width
        layers: list[nn.Module] = []
        for width_in in (inputs, config.width, config.width):
            layers += [nn.Linear(width_in, config.width), nn.SiLU()]
            if dropout:  # no layer without dropout: the original method's network, parameter for parameter
                layers.append(FixableDropout(dropout))
        self.mlp = nn.Sequential(*layers, nn.Linear(config.width, dim))

    def dropouts(self) -> list[FixableDropout]:
        return [layer for layer in self.mlp if isinstance(layer, FixableDropout)]

    def forward(self, x_t, t, improves, context_embedding) -> torch.Tensor:
        features = [x_t, timestep_embedding(t), improves.reshape(-1, 1), context_embedding]
        return self.mlp(torch.cat(features, dim=1))


def Loss(eps: torch.Tensor, eps_hat: torch.Tensor) -> torch.Tensor:  # noqa: N802 (the original method's name for it)
    """The original method's loss: the mean squared error between the true and the predicted noise."""
    return torch.mean((eps - eps_hat) ** 2)


# ------------------------------------------------------------------------------- Training, inference
class GenerativeHPO:
    """HPO-B compatible method: ``observe_and_suggest(X_obs, y_obs, X_pen=None)``; higher y is better."""

    def __init__(self, seed: int = 0, config: GenerativeConfig | None = None):
        self.config = config or GenerativeConfig()
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.scheduler = DDPMScheduler(
            num_train_timesteps=self.config.timesteps, beta_schedule="linear", clip_sample=True, clip_sample_range=1.0
        )
        self.noise_adder, self.denoiser = NoiseAdder(self.scheduler), Denoiser(self.scheduler)
        if self.config.sample_steps:  # DDIM on the same betas: the network is trained the same way
            self.denoiser = Denoiser(DDIMScheduler.from_config(self.scheduler.config))
        self.network: Network | None = None
        self.random_fallbacks = 0  # suggestions where every sample repeated a seen configuration
        self.optimizer: torch.optim.Optimizer | None = None
        self.sources: list[Sampler] = []  # earlier studies' histories (pretrain)

    def fit(self, X: np.ndarray, y: np.ndarray, steps: int | None = None) -> list[float]:
        """Train (first call) or fine-tune (later calls, or after ``pretrain``) on the history; returns
        the step losses."""
        X = np.asarray(X, dtype=np.float32)
        if self._new_network(X.shape[1]):
            self.sources = []
            steps = steps or self.config.first_fit_steps
        return self._train([self._sampler(X, y)], steps or self.config.refit_steps, self.sources)

    def pretrain(self, histories: list[tuple[np.ndarray, np.ndarray]], steps: int | None = None) -> list[float]:
        """Warm start: train on the histories of earlier studies of the same space (other data sets,
        HPO-B's meta-train split), each step a batch from one of them, so every context holds points of
        one task. Later ``fit`` calls then fine-tune (``refit_steps``) instead of training afresh, with
        ``source_share`` of their batches still from these histories: fine-tuned on the new study's few
        points alone, the model forgets within a few dozen steps what the earlier studies taught it."""
        histories = [(np.asarray(X, dtype=np.float32), y) for X, y in histories if len(X) >= 2]
        if not histories:
            return []
        dims = {X.shape[1] for X, _ in histories}
        if len(dims) != 1:
            raise ValueError(f"every history must have the same number of columns, got {sorted(dims)}")
        self._new_network(dims.pop(), force=True, pretrained=True)
        self.sources = [self._sampler(X, y) for X, y in histories]
        return self._train(self.sources, steps or self.config.pretrain_steps)

    def _new_network(self, dim: int, force: bool = False, pretrained: bool = False) -> bool:
        """A fresh network and optimiser when there is none for this dimension (or ``force``). Unless the
        config sets it, dropout (and so Thompson sampling) is for a cold start only: a pre-trained model
        knows where good regions were, and exploring away from them cost rank (docs/generative_hpo.md,
        "Thompson sampling by dropout")."""
        if not force and self.network is not None and self.network.mlp[-1].out_features == dim:
            return False
        dropout = self.config.dropout
        if dropout is None:
            dropout = 0.0 if pretrained else COLD_START_DROPOUT
        self.network = Network(dim, self.config, dropout)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=self.config.lr)
        return True

    def _sampler(self, X: np.ndarray, y: np.ndarray) -> Sampler:
        return Sampler(
            np.asarray(X, dtype=np.float32),
            np.asarray(y, dtype=np.float64).reshape(-1),
            self.config.max_context,
            self.rng,
            self.config.improve_share,
            self.config.queries_per_context,
            self.config.y_scaling,
        )

    def _train(self, samplers: list[Sampler], steps: int, replay: list[Sampler] = ()) -> list[float]:
        """``steps`` Adam steps, each on a batch from one of ``samplers`` (or, ``source_share`` of the
        time, from one of ``replay``)."""
        self.network.train()
        losses = []
        for _ in range(steps):
            pool = replay if replay and self.rng.random() < self.config.source_share else samplers
            sampler = pool[int(self.rng.integers(len(pool)))] if len(pool) > 1 else pool[0]
            x, improves, context, padding, group = sampler(self.config.batch_size)
            z0 = 2.0 * x - 1.0
            eps = torch.randn(z0.shape, generator=self.generator)
            t = torch.randint(0, self.config.timesteps, (len(z0),), generator=self.generator)
            z_t = self.noise_adder(z0, eps, t)
            loss = Loss(eps, self.network(z_t, t, improves, self.network.context(context, padding)[group]))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses.append(float(loss.detach()))
        self.config.losses.extend(losses)
        return losses

    @torch.no_grad()
    def generate(self, X: np.ndarray, y: np.ndarray, n: int = 1, improves: float = 1.0) -> np.ndarray:
        """The inference loop: from z_T ~ N(0, I), denoise T steps given I and C = the whole history."""
        X = np.asarray(X, dtype=np.float32)
        d = X.shape[1]
        context = np.concatenate([X, scale_y(y, self.config.y_scaling)[:, None]], axis=1)
        context_t = torch.from_numpy(context[None].astype(np.float32))
        self.network.eval()
        embedding = self.network.context(context_t, torch.zeros(1, len(X), dtype=torch.bool)).expand(n, -1)
        w = self.config.guidance
        # with guidance the network sees each point twice, once with I = improves and once with I = 1 - improves
        flag = (
            torch.cat([torch.full((n,), float(improves)), torch.full((n,), 1.0 - float(improves))])
            if w
            else torch.full((n,), float(improves))
        )
        embedding = embedding.repeat(2, 1) if w else embedding
        sampling = self.denoiser.scheduler
        sampling.set_timesteps(self.config.sample_steps or self.config.timesteps)
        z = torch.randn((n, d), generator=self.generator)
        for t in sampling.timesteps:
            if w:
                eps_wanted, eps_other = self.network(
                    z.repeat(2, 1), torch.full((2 * n,), int(t)), flag, embedding
                ).chunk(2)
                eps_hat = eps_wanted + w * (eps_wanted - eps_other)
            else:
                eps_hat = self.network(z, torch.full((n,), int(t)), flag, embedding)
            z = self.denoiser(eps_hat, int(t), z, self.generator)
        return ((z.clamp(-1.0, 1.0) + 1.0) / 2.0).numpy()

    @torch.no_grad()
    def improvement_score(self, candidates: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """log p(x | I=1, C) - log p(x | I=0, C) up to a constant, per candidate: the model used as its own
        classifier (a diffusion classifier). The ELBO difference is the gap between the noise-prediction
        errors under I=0 and I=1 at the same (t, eps); higher means "more likely to beat the history"."""
        n, d = candidates.shape
        # eval: called straight after fit, training-mode dropout would give the I = 0 and I = 1 passes
        # different random sub-networks (suggest's generate has set eval, or fixed one mask, already)
        self.network.eval()
        context = np.concatenate([X, scale_y(y, self.config.y_scaling)[:, None]], axis=1)
        embedding = self.network.context(
            torch.from_numpy(context[None].astype(np.float32)), torch.zeros(1, len(X), dtype=torch.bool)
        )
        eps, t = self.score_noise(n, d)
        k = len(t) // n
        embedding = embedding.expand(n * k, -1)
        z0 = (2.0 * torch.from_numpy(np.asarray(candidates, dtype=np.float32)) - 1.0).repeat_interleave(k, dim=0)
        z_t = self.noise_adder(z0, eps, t)
        error = {
            flag: ((self.network(z_t, t, torch.full((n * k,), flag), embedding) - eps) ** 2).sum(dim=1)
            for flag in (0.0, 1.0)
        }
        return (error[0.0] - error[1.0]).reshape(n, k).mean(dim=1).numpy()

    def score_noise(self, n: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The (eps, t) draws ``improvement_score`` rates ``n`` candidates of ``d`` dimensions on, the
        candidates' rows one after another: ``score_draws`` independent draws for each candidate."""
        k = self.config.score_draws
        eps = torch.randn((n * k, d), generator=self.generator)
        t = torch.randint(0, self.config.timesteps, (n * k,), generator=self.generator)
        return eps, t

    def suggest(self, X: np.ndarray, y: np.ndarray, project: Projection | None = None) -> np.ndarray:
        """One configuration: a sample given I = 1, or with ``candidates`` > 1 the sample the model
        itself rates most likely to improve.

        With ``thompson`` (and dropout) the samples and the ranking all come from one sub-network, one
        dropout mask drawn per suggestion: Thompson sampling. Where the history pins the model down the
        sub-networks agree; where it does not they differ, so successive suggestions can leave the
        incumbent instead of piling up there (docs/generative_hpo.md, "Thompson sampling by dropout").

        ``project`` maps raw samples to valid points of the space (rounded integers, one-hot
        categoricals). Given one, candidates are ranked as the configurations they decode to, and
        (``novel_only``) those already in the history are dropped: in a discrete space the samples pile up
        on the best configurations seen, and re-evaluating one wastes a trial. If every sample repeats
        one, uniform random points take their place and the model ranks those instead."""
        dropouts = self.network.dropouts() if self.config.thompson else []
        for layer in dropouts:
            layer.mask = (torch.rand(self.config.width, generator=self.generator) >= layer.p).float() / (1.0 - layer.p)
        try:
            return self._suggest(X, y, project)
        finally:
            for layer in dropouts:
                layer.mask = None

    def _suggest(self, X: np.ndarray, y: np.ndarray, project: Projection | None) -> np.ndarray:
        proposals = self.generate(X, y, n=self.config.candidates)
        if project is not None:
            proposals = project(proposals)
            if self.config.novel_only:
                proposals = novel_rows(proposals, X)
                if len(proposals) == 0:
                    self.random_fallbacks += 1
                    uniform = self.rng.uniform(size=(max(self.config.candidates, 16), X.shape[1]))
                    proposals = novel_rows(project(uniform.astype(np.float32)), X)
                    if len(proposals) == 0:  # every random point was seen: the space is (nearly) exhausted
                        return project(uniform[:1].astype(np.float32))[0]
        if len(proposals) == 1:
            return proposals[0]
        return proposals[int(np.argmax(self.improvement_score(proposals, X, y)))]

    def observe_and_suggest(self, X_obs, y_obs, X_pen=None):
        """HPO-B: continuous -> a point of [0, 1]^d; discrete (X_pen given) -> the index of a pending
        configuration: each sample is snapped to its nearest pending configuration and the model ranks
        those (pending configurations are unevaluated by definition)."""
        X_obs = np.asarray(X_obs, dtype=np.float32)
        y_obs = np.asarray(y_obs, dtype=np.float64).reshape(-1)
        if len(X_obs) == 0:
            if X_pen is not None:
                return int(self.rng.integers(len(X_pen)))
            raise ValueError("observe_and_suggest needs at least one observation in the continuous setting")
        self.fit(X_obs, y_obs)
        if X_pen is None:
            return self.suggest(X_obs, y_obs)
        pending = np.asarray(X_pen, dtype=np.float32)
        nearest = lambda P: pending[np.argmin(((P[:, None, :] - pending[None]) ** 2).sum(axis=2), axis=1)]  # noqa: E731
        choice = self.suggest(X_obs, y_obs, project=nearest)
        return int(np.argmin(((pending - choice[None]) ** 2).sum(axis=1)))


Projection = Callable[[np.ndarray], np.ndarray]


def novel_rows(candidates: np.ndarray, seen: np.ndarray, atol: float = 1e-6) -> np.ndarray:
    """The distinct rows of ``candidates`` that are not rows of ``seen`` (first occurrence kept)."""
    kept: list[np.ndarray] = []
    for row in candidates:
        if np.isclose(seen, row[None], atol=atol, rtol=0).all(axis=1).any():
            continue
        if any(np.allclose(row, other, atol=atol, rtol=0) for other in kept):
            continue
        kept.append(row)
    return np.stack(kept) if kept else candidates[:0]
