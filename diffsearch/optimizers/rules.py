"""Compile an update rule into a ``torch.optim.Optimizer`` for your own training code.

    import diffsearch.optimizers
    opt = diffsearch.optimizers.from_expr("exp(ld * sg * sm1) * g", model.parameters(), lr=1e-3, total_steps=10_000)

Each step is ``w <- w * (1 - lr * weight_decay) - lr * update`` (weight decay decoupled, as in AdamW).
The rule is evaluated once per parameter group on all its gradients at once (flattened into one vector),
so a step costs a handful of vector operations whatever the number of tensors; it runs wherever the
parameters live (CPU or CUDA). State exists only for the moments the rule reads. A rule with a matrix operator
(orth, rownorm, colnorm) is evaluated parameter by parameter instead, each seen as a (first dim, rest) matrix.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

from diffsearch.optimizers.baselines import TORCH_BASELINES
from diffsearch.spaces.update_rules import MATRIX_OPS, Program, RuleState, evaluate, parse, to_text


class RuleOptimizer(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable,
        program: Sequence[str] | str,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        total_steps: int | None = None,
        seed: int = 0,
    ):
        self.program: Program = parse(program) if isinstance(program, str) else tuple(program)
        self.total_steps, self.seed = total_steps, seed
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay})

    def __repr__(self) -> str:
        return f"RuleOptimizer({to_text(self.program)!r}, lr={self.defaults['lr']})"

    def _group_state(self, group: dict, flat: torch.Tensor) -> RuleState:
        # the whole group's state hangs off its first parameter, so state_dict() carries it
        holder = self.state[group["params"][0]]
        if "rule" not in holder:
            generator = torch.Generator(device=flat.device).manual_seed(self.seed + len(self.state))
            holder["rule"] = RuleState(self.program, flat, self.total_steps, generator)
        return holder["rule"]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = torch.cat([p.grad.reshape(-1) for p in params])
            weights = torch.cat([p.reshape(-1) for p in params])
            state = self._group_state(group, grads)
            if next(iter(state.moments.values()), grads).numel() != grads.numel():
                raise RuntimeError(
                    "RuleOptimizer keeps one flat state per parameter group: the set of "
                    "parameters with gradients must not change between steps"
                )
            leaves = state.leaves(grads, weights)
            if MATRIX_OPS & set(self.program):
                update = self._per_parameter(params, leaves, state.generator)
            else:
                update = evaluate(self.program, leaves, state.generator)
                update = torch.as_tensor(update, dtype=grads.dtype, device=grads.device).expand_as(grads)
            if group["weight_decay"]:
                torch._foreach_mul_(params, 1 - group["lr"] * group["weight_decay"])
            pieces = torch.split(update, [p.numel() for p in params])
            torch._foreach_add_(params, [u.view_as(p) for u, p in zip(pieces, params)], alpha=-group["lr"])
        return loss

    def _per_parameter(self, params: list[torch.Tensor], leaves: dict, generator) -> torch.Tensor:
        """The rule on each parameter's slice of the leaves, viewed as a (first dim, rest) matrix."""
        pieces, offset = [], 0
        for p in params:
            n, rows = p.numel(), p.shape[0] if p.ndim >= 2 else 1
            sliced = {
                k: v[offset : offset + n].view(rows, -1) if isinstance(v, torch.Tensor) else v
                for k, v in leaves.items()
            }
            u = torch.as_tensor(evaluate(self.program, sliced, generator), dtype=p.dtype, device=p.device)
            pieces.append(u.expand(rows, n // rows).reshape(-1))
            offset += n
        return torch.cat(pieces)


def from_expr(
    expr: str | Sequence[str],
    params: Iterable,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    total_steps: int | None = None,
    seed: int = 0,
) -> RuleOptimizer:
    """An optimizer that steps ``w -= lr * expr`` (see ``diffsearch optimizer --help`` for the language).

    ``total_steps`` is needed by rules that use a decay (ld, cd, rd); ``seed`` seeds drop and noise.
    """
    return RuleOptimizer(params, expr, lr=lr, weight_decay=weight_decay, total_steps=total_steps, seed=seed)


def make_optimizer(
    what: Program | str,
    params: Iterable,
    lr: float,
    weight_decay: float = 0.0,
    total_steps: int | None = None,
    seed: int = 0,
) -> torch.optim.Optimizer:
    """The optimizer a task trains with: a program of the language, or a torch baseline by name ("Muon")."""
    if isinstance(what, str) and what in TORCH_BASELINES:
        return TORCH_BASELINES[what].value(params, lr=lr, weight_decay=weight_decay, total_steps=total_steps, seed=seed)
    return RuleOptimizer(params, what, lr=lr, weight_decay=weight_decay, total_steps=total_steps, seed=seed)


# the hand-designed optimizers written in the language: name -> (expression, weight decay)
HAND_DESIGNED = {
    "SGD": ("g", 0.0),
    "momentum": ("m1", 0.0),  # = torch SGD(momentum=0.9) with lr x 10
    "Adam": ("m1h / sqrt(m2h)", 0.0),
    "AdamW": ("m1h / sqrt(m2h)", 0.01),
    "RMSprop": ("g / sqrt(m2)", 0.0),  # = torch RMSprop(alpha=0.999)
    "Lion": ("sign(ml)", 0.0),
    "PowerSign": ("exp(sg * sm1) * g", 0.0),
    "PowerSign-ld": ("exp(ld * sg * sm1) * g", 0.0),
    "AddSign": ("(1 + sg * sm1) * g", 0.0),
    "AddSign-ld": ("(1 + ld * sg * sm1) * g", 0.0),
}
# Muon's matrix half in the language (= torch.optim.Muon with adjust_lr_fn="match_rms_adamw" on 2-D weights);
# the Muon baseline itself (diffsearch.optimizers) adds AdamW for the rest, which one rule cannot say
MUON_RULE = ("orth(mn)", 0.01)


def baseline(name: str) -> tuple[Program | str, float]:
    """(what ``make_optimizer`` takes, weight decay) of a hand-designed rule or a torch baseline, by name."""
    if name in TORCH_BASELINES:
        return name, TORCH_BASELINES[name].can("weight_decay")
    expr, weight_decay = HAND_DESIGNED[name]
    return parse(expr), weight_decay


def baseline_names() -> tuple[str, ...]:
    """Every baseline the job knows: the hand-designed rules, then the torch optimizers (Muon)."""
    return (*HAND_DESIGNED, *TORCH_BASELINES.names())
