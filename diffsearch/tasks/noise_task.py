"""One noise search's evaluations: sampling with an exact NFE count, scoring by the verifier, one trial each.

The budget is counted in denoiser evaluations (NFE) per image, as the family runs its denoiser: a step of
classifier-free guidance is 2 NFE (the conditional and unconditional passes, batched in one call on SD,
SDXL and SD3; FLUX with ``--true-cfg`` > 1 makes two calls), a step without it 1; so one generation costs
``steps * passes`` NFE (``generation_nfe``). A gradient step through the sampler costs its forward NFE plus
twice as many for the backward pass (counted, not measured; the ``gradient`` searcher says so).
Decoding with the VAE and scoring are not denoiser evaluations; they are timed.

Every scored image is an Optuna trial in the run's study (value: the first reward's loss, lower is better;
attrs: each reward's value (minus its loss), the NFE spent when it was scored, the noise's seed or that it was moved, the
step for a partial trajectory's estimate). A complete generation from a seed is read back from a finished
trial of the same study when the run is repeated (charged as before, not generated again).

With ``queue=True`` (``diffsearch noise --workers N``, N > 1) the complete generations from a seed (the user's
seed, best-of-N's draws, every searcher's left-over generations) are handed out as WAITING trials that carry
their seed, prompt and negative prompt; any worker (``NoiseTrialRunner``: this process while it waits, the
``--workers`` processes) generates and scores them, and the task reads the scores back by seed, in the order
it asked, so the verifier's favourite is the one one process finds. Moved latents and injected paths
(zero-order's neighbours, the gradient's iterates, paths and particles) live in this process's memory and are
sampled here. The budget is charged when the work is handed out, the same NFE as here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import optuna
import torch

from diffsearch.backends.families.base import PipelineBackend
from diffsearch.errors import TrialFailed, UsageError
from diffsearch.ledger.interrupt import stop_point
from diffsearch.ledger.trial_loop import TrialRunner, WorkQueue, give_up_reason
from diffsearch.objectives.ensemble import Verifier
from diffsearch.spaces.noise import Candidate, NoiseSpace, conditioning

SEED_RANGE = 2**31 - 1


class BudgetExceeded(RuntimeError):
    """A searcher asked for more NFE than its budget: a bug in the searcher (they plan within it)."""


@dataclass
class Scored:
    candidate: Candidate
    scores: np.ndarray  # one per reward (higher is better)
    nfe: int  # NFE spent when it was scored


class NoiseTask:
    """What a noise searcher calls: draw seeds, run sampling segments, score, keep the complete candidates."""

    def __init__(
        self,
        backend: PipelineBackend,
        verifier: Verifier,
        prompt: str,
        study: optuna.Study | None,
        budget_nfe: int,
        seed: int = 0,
        user: Candidate | None = None,
        batch: int = 8,
        on_eval=None,
        negative: str = "",
        queue: bool = False,
    ):
        self.backend, self.verifier, self.prompt, self.study = backend, verifier, prompt, study
        self.space = NoiseSpace(backend)
        self.steps = len(backend.timesteps)
        self.passes = backend.passes_per_step()
        self.generation_nfe = self.steps * self.passes
        self.budget = int(budget_nfe)
        if self.budget < self.generation_nfe:
            raise UsageError(
                f"--budget-nfe {self.budget} is less than one generation ({self.steps} steps x "
                f"{self.passes} denoiser passes = {self.generation_nfe} NFE)"
            )
        self.seed, self.batch, self.on_eval = seed, batch, on_eval
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator("cpu").manual_seed(seed)
        self.user = user or Candidate(seed=seed, origin="user")
        self.negative = negative  # a negative prompt (found by diffsearch prompt, or the user's)
        self.cond, self.uncond = conditioning(backend, prompt, negative)
        self.spent = 0  # NFE charged (forward, plus 2x forward for a backward pass)
        self.forward_nfe = 0  # denoiser evaluations run
        self.finals: list[Scored] = []
        self.partials = 0
        self.start = time.perf_counter()
        self.trace: list[tuple[int, float]] = []  # (NFE, best combined score so far), for curves
        self._cache = self._finished() if study is not None else {}
        self.queue: WorkQueue | None = None
        if queue:
            if study is None:
                raise ValueError("a work queue needs a study")
            runner = NoiseTrialRunner(study, backend, verifier, batch)
            self.queue = WorkQueue(
                study, runner, lambda t: t.user_attrs.get("key") if "queued" in t.user_attrs else None
            )

    # ---- budget ---------------------------------------------------------------------------------------
    @property
    def remaining(self) -> int:
        return self.budget - self.spent

    def generations_left(self) -> int:
        return self.remaining // self.generation_nfe

    def charge(self, nfe: int, forward: int | None = None) -> None:
        if self.spent + nfe > self.budget:
            raise BudgetExceeded(f"{self.spent} + {nfe} NFE is over the budget of {self.budget}")
        self.spent += nfe
        self.forward_nfe += nfe if forward is None else forward

    # ---- drawing --------------------------------------------------------------------------------------
    def random_seeds(self, n: int) -> list[int]:
        return [int(s) for s in self.rng.integers(0, SEED_RANGE, n)]

    # ---- sampling -------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, states: torch.Tensor, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Steps ``start`` .. ``stop``-1 for every state (charged: N x steps x passes NFE); the states after
        them and the closed-form x0 of the last step run."""
        n, steps = len(states), stop - start
        if steps <= 0:
            return states, None
        self.charge(n * steps * self.passes)
        outs, x0s = [], []
        for b in range(0, n, self.batch):
            stop_point()
            x, x0 = states[b : b + self.batch], None
            cond, uncond = self.backend._expand(self.cond, len(x)), self.backend._expand(self.uncond, len(x))
            for i in range(start, stop):
                t = self.backend.timesteps[i]
                x, x0 = self.backend.step(self.backend.predict(x, i, t, cond, uncond), i, t, x)
            outs.append(x)
            x0s.append(x0)
        return torch.cat(outs), torch.cat(x0s)

    def start_states(self, candidates: list[Candidate]) -> torch.Tensor:
        return self.space.initial(candidates)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.backend.decode(latents[b : b + self.batch]) for b in range(0, len(latents), self.batch)])

    def renoise(self, x0: torch.Tensor, i: int) -> torch.Tensor:
        """States after step ``i`` rebuilt from ``x0`` with fresh noise from the task's generator."""
        noise = torch.randn(x0.shape, generator=self.generator).to(x0.device, x0.dtype)
        return self.backend.renoise(x0, i, noise)

    @torch.no_grad()
    def replay(self, candidate: Candidate) -> torch.Tensor:
        """The candidate's image made again from its saved noise (not charged: outputs, checks)."""
        b = self.backend
        x = self.space.initial([candidate])
        for i, t in enumerate(b.timesteps):
            x, _ = b.step(b.predict(x, i, t, b._expand(self.cond, 1), b._expand(self.uncond, 1)), i, t, x)
            if i in candidate.injections:
                x = candidate.injections[i].reshape(x.shape).to(x.device, x.dtype)
        return b.decode(x)

    # ---- scoring --------------------------------------------------------------------------------------
    def evaluate(self, candidates: list[Candidate]) -> list[Scored]:
        """Complete generations of ``candidates`` (one generation each, charged), scored and recorded."""
        cached = [c.key() in self._cache for c in candidates]
        if len(candidates) * self.generation_nfe > self.remaining:
            raise BudgetExceeded(f"{len(candidates)} generations do not fit the {self.remaining} NFE left")
        queued = [c for c, hit in zip(candidates, cached) if not hit and self.queue is not None and c.key()]
        todo = [c for c, hit in zip(candidates, cached) if not hit and not (self.queue is not None and c.key())]
        scores = {id(c): s for c, s in zip(queued, self._collect(queued))}
        if todo:
            states, _ = self.sample(self.start_states(todo), 0, self.steps)
            fresh = self.verifier.scores(self.decode(states), self.prompt)
            scores.update({id(c): fresh[:, j] for j, c in enumerate(todo)})
        read_back = len(candidates) - len(todo) - len(queued)
        self.charge(read_back * self.generation_nfe, forward=0)  # read back: same charge
        out = []
        for c, hit in zip(candidates, cached):
            s = np.array(self._cache[c.key()]) if hit else scores[id(c)]
            out.append(self.finish(c, s, record=not any(c is q for q in queued)))  # a worker's trial is its record
        return out

    def _collect(self, candidates: list[Candidate]) -> list[np.ndarray]:
        """Complete generations from seeds, run by whichever worker is free (charged here); their scores."""
        if not candidates:
            return []
        assert self.queue is not None
        self.charge(len(candidates) * self.generation_nfe)
        wanted = {}
        for c in candidates:
            attrs = {
                "kind": "final",
                **c.describe(),
                "nfe": self.spent,
                "prompt": self.prompt,
                "negative": self.negative,
                "key": c.key(),
                "queued": True,
            }
            wanted[c.key()] = self._submitter(attrs)
        self.queue.collect(wanted)
        out = []
        for c in candidates:
            trial = self.queue.done[c.key()]
            if trial.state != optuna.trial.TrialState.COMPLETE:
                raise RuntimeError(f"the generation from seed {c.seed} failed: {trial.user_attrs.get('fail_reason')}")
            out.append(np.array([trial.user_attrs["scores"][n] for n in self.verifier.names], dtype=float))
        return out

    def _submitter(self, attrs: dict):
        def submit(give_up: bool) -> None:  # a waiting trial carries its seed and prompt: any worker can run it
            state = optuna.trial.TrialState.FAIL if give_up else optuna.trial.TrialState.WAITING
            extra = {"fail_reason": give_up_reason()} if give_up else {}
            self.study.add_trial(optuna.trial.create_trial(state=state, user_attrs={**attrs, **extra}))

        return submit

    def finish(
        self, candidate: Candidate, scores: np.ndarray, trial_attrs: dict | None = None, record: bool = True
    ) -> Scored:
        """Keep a complete candidate whose final image has ``scores``; one trial (unless a worker's trial
        already records it)."""
        scored = Scored(candidate, np.asarray(scores, dtype=float), self.spent)
        if record:
            self._record(scored, {"kind": "final", **(trial_attrs or {})})
        self.finals.append(scored)
        best = (
            float(self.verifier.combine(np.stack([f.scores for f in self.finals], axis=1)).max())
            if len(self.verifier.names) > 1
            else max(float(f.scores[0]) for f in self.finals)
        )
        self.trace.append((self.spent, best))
        if self.on_eval is not None:
            self.on_eval(self)
        return scored

    def score_partial(self, x0: torch.Tensor, step: int, candidates: list[Candidate]) -> np.ndarray:
        """R x N verifier scores of the clean estimates of partial trajectories after step ``step``
        (decoded, no NFE); one trial each."""
        scores = self.verifier.scores(self.decode(x0), self.prompt)
        for j, c in enumerate(candidates):
            self._record(Scored(c, scores[:, j], self.spent), {"kind": "partial", "step": step})
            self.partials += 1
        return scores

    def best(self) -> Scored:
        combined = self.verifier.combine(np.stack([f.scores for f in self.finals], axis=1))
        return self.finals[int(np.argmax(combined))]

    def combined(self, scored: list[Scored]) -> np.ndarray:
        return self.verifier.combine(np.stack([s.scores for s in scored], axis=1))

    # ---- ledger ---------------------------------------------------------------------------------------
    def _record(self, scored: Scored, attrs: dict) -> None:
        if self.study is None:
            return
        c = scored.candidate
        loss = -float(scored.scores[0])  # the verifier's values are minus the rewards' losses
        attrs = {
            **attrs,
            **c.describe(),
            "nfe": scored.nfe,
            "prompt": self.prompt,
            "negative": self.negative,
            "scores": {n: float(s) for n, s in zip(self.verifier.names, scored.scores)},
            "seconds": round(time.perf_counter() - self.start, 3),
        }
        if c.key() is not None and attrs["kind"] == "final":
            attrs["key"] = c.key()
        self.study.add_trial(optuna.trial.create_trial(value=loss, user_attrs=attrs))

    def _finished(self) -> dict[str, list[float]]:
        out = {}
        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            key, scores = t.user_attrs.get("key"), t.user_attrs.get("scores")
            if key and scores and list(scores) == self.verifier.names:
                out[key] = [scores[n] for n in self.verifier.names]
        return out


class NoiseTrialRunner(TrialRunner):
    """Generates and scores the seed a waiting trial carries (one complete generation); needs only the
    pipeline and the verifier. The sampling is the task's own (one ``NoiseTask`` per prompt, no budget)."""

    key_attr = "key"

    def __init__(self, study: optuna.Study, backend: PipelineBackend, verifier: Verifier, batch: int = 1):
        super().__init__(study)
        self.backend, self.verifier, self.batch = backend, verifier, batch
        self._tasks: dict[tuple[str, str], NoiseTask] = {}

    def evaluate(self, trial: optuna.Trial) -> float:
        a = trial.user_attrs
        start = time.perf_counter()
        key = (a["prompt"], a.get("negative", ""))
        if key not in self._tasks:
            steps = len(self.backend.timesteps) * self.backend.passes_per_step()
            self._tasks[key] = NoiseTask(
                self.backend, self.verifier, key[0], None, steps, batch=self.batch, negative=key[1]
            )
        task = self._tasks[key]
        try:
            states, _ = task.sample(task.start_states([Candidate(seed=int(a["seed"]))]), 0, task.steps)
            scores = self.verifier.scores(task.decode(states), task.prompt)[:, 0]
        except (RuntimeError, ValueError) as exc:  # out of memory, a reward's bad return...
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            raise TrialFailed(str(exc)) from exc
        finally:
            task.spent = task.forward_nfe = 0  # the job's task charges the budget; this one only samples
        if not np.isfinite(scores).all():
            trial.set_user_attr("fail_reason", "a non-finite verifier score")
            raise TrialFailed("a non-finite verifier score")
        trial.set_user_attr("scores", {n: float(v) for n, v in zip(self.verifier.names, scores)})
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
        return -float(scores[0])
