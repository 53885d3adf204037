"""Gradient-based prompt optimisation (GPO, from DPO-Diff, Wang et al., ICML 2024).

A categorical distribution per slot, relaxed with Gumbel-softmax (tau = 1): each slot's token position
receives the probability-weighted mix of its choices' token embeddings, and the mixed sequence runs
through the whole text encoder (the reference feeds mixed embeddings straight to the UNet, skipping
the text transformer; we do not), and through every encoder of SDXL, SD3 and FLUX (SoftPrompt). The loss comes through the shortcut gradient (K UNet steps with
gradient from step index t, closed-form x0, VAE decode, spherical CLIP loss).

Reference update: gradients clipped to +-0.025, RMSprop (lr 0.1, momentum 0.5, alpha 0.99), logits
clipped to [0, 3], 20 iterations, t = step 15 + i // 2 of 50 (scaled to the run's step count).
Candidates are argmax of Gumbel samples of the learned logits, the mode first.
"""

from __future__ import annotations

import numpy as np
import torch

from diffsearch.searchers.prompt.result import PromptSearchResult, PromptSearchSettings
from diffsearch.spaces.prompts import PromptSpace

ITERATIONS, LR, MOMENTUM, ALPHA, GRAD_CLIP, LOGIT_RANGE = 20, 0.1, 0.5, 0.99, 0.025, (0.0, 3.0)
INIT_OTHER, INIT_ORIGINAL = 1.0, 2.0  # logits start favouring the user's own choice


def t_schedule(iteration: int, steps: int) -> int:
    """The reference's step index 15 + i // 2 of 50 sampling steps, scaled to ``steps``."""
    return min(steps - 1, int(round((15 + iteration // 2) * steps / 50)))


class SoftPrompt:
    """Builds each text encoder's token embeddings of a layout from per-slot choice probabilities.

    Every encoder of the family gets the same mix (SDXL's two CLIPs, SD3's CLIP-L, CLIP-G and T5, FLUX's
    CLIP and T5: prompt_2 / prompt_3 and negative_prompt_2 / _3 alike), each through its own token
    embedding table. A slot's choices are tokenized by each encoder's own tokenizer: a word that is one
    CLIP token may be several T5 pieces ("bonsai" -> "▁bon", "s", "a", "i"), so a slot spans, per encoder,
    as many positions as its longest choice there; shorter choices, and the empty one, are padded with
    that encoder's pad token. Fixed text between slots is tokenized piece by piece (for T5 each piece
    starts a new word, so a comma right after a word gains T5's word marker: the only difference from
    tokenizing the whole sentence). CLIP sequences start with bos, T5's do not; all end with eos.
    """

    def __init__(self, backend, space: PromptSpace):
        self.backend, self.space = backend, space
        self.encoders = backend.encoders
        # choice_ids[e][slot]: choices x width ids for encoder e
        self.choice_ids = []
        for enc in self.encoders:
            pad = enc.special()[2]
            per_slot = []
            for slot in space.slots:
                ids = [enc.token_ids(c) if c else [] for c in slot.choices]
                width = max(1, max(len(i) for i in ids))
                per_slot.append(torch.tensor([i + [pad] * (width - len(i)) for i in ids], device=backend.device))
            self.choice_ids.append(per_slot)

    def sequence(self, e: int, layout, probs: list[torch.Tensor]) -> tuple[torch.Tensor, int]:
        """(1 x L x D token embeddings for encoder ``e``, position of its eos)."""
        enc = self.encoders[e]
        bos, eos, pad = enc.special()
        table = enc.token_embedding().weight
        rows = [table[[bos]]] if bos is not None else []
        for item in layout:
            if isinstance(item, str):
                ids = enc.token_ids(item if enc.bos else item.strip())
                if ids:
                    rows.append(table[ids])
            else:
                rows.append(torch.einsum("n,nwd->wd", probs[item].to(table.dtype), table[self.choice_ids[e][item]]))
        seq = torch.cat(rows)[: enc.length - 1] if rows else table[:0]
        seq = torch.cat([seq, table[[eos]]])
        filler = table[[pad]].expand(enc.length - len(seq), -1)
        return torch.cat([seq, filler])[None], len(seq) - 1

    def _encode(self, layout, probs):
        parts = [self.sequence(e, layout, probs) for e in range(len(self.encoders))]
        return self.backend.encode_token_embeds([p[0] for p in parts], [p[1] for p in parts])

    def encode(self, probs: list[torch.Tensor]):
        """(prompt, negative prompt) conditionings for the mixed choices."""
        return self._encode(self.space.positive, probs), self._encode(self.space.negative, probs)


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


def learn(
    task,
    space: PromptSpace,
    seed: int,
    iterations: int = ITERATIONS,
    k: int = 1,
    tau: float = 1.0,
    budget_share: float = 0.5,
) -> PromptSearchResult:
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
        probs = [
            torch.softmax((lg + gumbel(lg.shape, generator)) / tau, dim=0).to(task.backend.device) for lg in logits
        ]
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
