"""Gradient-based prompt optimisation (GPO, from DPO-Diff, Wang et al., ICML 2024).

A categorical distribution per slot, relaxed with Gumbel-softmax (tau = 1): each slot's token position
receives the probability-weighted mix of its choices' token embeddings, and the mixed sequence runs
through the whole CLIP text encoder (the reference feeds mixed embeddings straight to the UNet, skipping
the text transformer; we do not). The loss comes through the shortcut gradient (K UNet steps with
gradient from step index t, closed-form x0, VAE decode, spherical CLIP loss).

Reference update: gradients clipped to +-0.025, RMSprop (lr 0.1, momentum 0.5, alpha 0.99), logits
clipped to [0, 3], 20 iterations, t = step 15 + i // 2 of 50 (scaled to the run's step count).
Candidates are argmax of Gumbel samples of the learned logits, the mode first.
"""

from __future__ import annotations

import numpy as np
import torch

from diffsearch.searchers.prompt_result import PromptSearchResult, PromptSearchSettings
from diffsearch.spaces.prompts import PromptSpace

ITERATIONS, LR, MOMENTUM, ALPHA, GRAD_CLIP, LOGIT_RANGE = 20, 0.1, 0.5, 0.99, 0.025, (0.0, 3.0)
INIT_OTHER, INIT_ORIGINAL = 1.0, 2.0  # logits start favouring the user's own choice


def t_schedule(iteration: int, steps: int) -> int:
    """The reference's step index 15 + i // 2 of 50 sampling steps, scaled to ``steps``."""
    return min(steps - 1, int(round((15 + iteration // 2) * steps / 50)))


class SoftPrompt:
    """Builds the 77 token embeddings of a layout from per-slot choice probabilities."""

    def __init__(self, backend, space: PromptSpace):
        self.backend, self.space = backend, space
        tok = backend.tokenizer
        self.bos, self.eos, self.pad = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
        self.length = tok.model_max_length
        # a slot spans as many positions as its longest choice (1 with the reference's one-token words);
        # shorter choices, and the empty one, are padded with the pad token
        self.choice_ids = []
        for slot in space.slots:
            ids = [backend.token_ids(c) if c else [] for c in slot.choices]
            width = max(1, max(len(i) for i in ids))
            padded = [i + [self.pad] * (width - len(i)) for i in ids]
            self.choice_ids.append(torch.tensor(padded, device=backend.device))

    def embeds(self, layout, probs: list[torch.Tensor]) -> torch.Tensor:
        table = self.backend.token_embedding().weight
        rows = [table[[self.bos]]]
        for item in layout:
            if isinstance(item, str):
                ids = self.backend.token_ids(item)
                if ids:
                    rows.append(table[ids])
            else:
                rows.append(torch.einsum("n,nwd->wd", probs[item].to(table.dtype), table[self.choice_ids[item]]))
        rows.append(table[[self.eos]])
        seq = torch.cat(rows)[: self.length]
        pad = table[[self.pad]].expand(self.length - len(seq), -1)
        return torch.cat([seq, pad])[None]

    def encode(self, probs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(prompt, negative prompt) encoder states for the mixed choices."""
        return (self.backend.encode_embeds(self.embeds(self.space.positive, probs)),
                self.backend.encode_embeds(self.embeds(self.space.negative, probs)))


def gumbel(shape, generator: torch.Generator) -> torch.Tensor:
    u = torch.rand(shape, generator=generator).clamp(1e-10, 1 - 1e-10)
    return -torch.log(-torch.log(u))


def initial_logits(space: PromptSpace) -> list[torch.Tensor]:
    out = []
    for slot in space.slots:
        logits = torch.full((len(slot.choices),), INIT_OTHER)
        logits[0] = INIT_ORIGINAL
        out.append(logits.requires_grad_(True))
    return out


def learn(task, space: PromptSpace, seed: int, iterations: int = ITERATIONS, k: int = 1, tau: float = 1.0,
          budget_share: float = 0.5) -> PromptSearchResult:
    """Learn the slot distributions with the shortcut gradient; stops early at ``budget_share`` of the budget.
    The result holds the learned logits and the loss of every gradient step."""
    soft = SoftPrompt(task.backend, space)
    logits = initial_logits(space)
    optimizer = torch.optim.RMSprop(logits, lr=LR, momentum=MOMENTUM, alpha=ALPHA)
    generator = torch.Generator().manual_seed(seed)
    steps = task.backend.steps
    log: list[dict] = []
    for i in range(iterations):
        t_index = t_schedule(i, steps)
        if task.spent + task.backend.shortcut_cost(t_index, k) > budget_share * task.budget:
            break
        probs = [torch.softmax((lg + gumbel(lg.shape, generator)) / tau, dim=0).to(task.backend.device)
                 for lg in logits]
        cond, uncond = soft.encode(probs)
        optimizer.zero_grad()
        loss = task.shortcut_loss(cond, uncond, t_index, k)
        loss.backward()
        for lg in logits:
            lg.grad.clamp_(-GRAD_CLIP, GRAD_CLIP)
        optimizer.step()
        with torch.no_grad():
            for lg in logits:
                lg.clamp_(*LOGIT_RANGE)
        log.append({"iteration": i, "t_index": t_index, "loss": float(loss.detach())})
    # copies: no aliasing of the live optimiser state
    return PromptSearchResult(gradient_steps=log, learned_logits=[lg.detach().clone() for lg in logits])


def sample_candidates(logits: list[torch.Tensor], n: int, seed: int, max_draws: int = 1000) -> list[tuple[int, ...]]:
    """The mode, then distinct argmax-of-Gumbel samples of the learned distribution."""
    generator = torch.Generator().manual_seed(seed)
    found = [tuple(int(lg.argmax()) for lg in logits)]
    for _ in range(max_draws):
        if len(found) >= n:
            break
        point = tuple(int((lg + gumbel(lg.shape, generator)).argmax()) for lg in logits)
        if point not in found:
            found.append(point)
    return found


def search(task, space: PromptSpace, seed: int, settings: PromptSearchSettings) -> PromptSearchResult:
    """Learn the distributions (half the budget at most), then evaluate their mode and samples."""
    learned = learn(task, space, seed, settings.iterations, settings.k)
    task.evaluate_many(sample_candidates(learned.learned_logits, int(np.ceil(task.remaining)) + 1, seed + 1))
    return learned
