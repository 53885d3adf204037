"""Muon on a model's hidden matrices, AdamW on everything else: the baseline the optimizer job must beat.

Muon (Jordan et al., 2024; ``torch.optim.Muon``) orthogonalises the Nesterov momentum of each weight matrix
by a Newton-Schulz iteration. As its authors prescribe, it is meant for hidden weight layers only: biases,
norm gains and the input and output layers go to AdamW. Here:

- every parameter with 2 or more dimensions is a matrix; a conv kernel (out, in, k, k) is viewed as
  (out, in * k * k) for Muon's step (as the authors' conv nets do), through a 2-D view sharing its storage;
- the first and the last matrix in parameter order are taken as the input and output layers (the order in
  which torch models register them: ``conv_in``/``conv_out``, ``inp``/``out``) and go to AdamW with the rest;
- one learning rate serves both halves: Muon's step is scaled by ``0.2 sqrt(max(A, B))`` (Moonshot's
  ``match_rms_adamw``, which makes its update RMS match AdamW's), so the lr grid that tunes AdamW tunes it too.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

MUON_MOMENTUM = 0.95  # torch's default (Nesterov)
ADJUST_LR = "match_rms_adamw"


def split_params(params: Iterable[torch.Tensor], hidden_only: bool = True) -> tuple[list, list]:
    """(matrices for Muon, the rest for AdamW)."""
    params = list(params)
    matrices = [p for p in params if p.ndim >= 2]
    if hidden_only and len(matrices) > 2:
        matrices = matrices[1:-1]
    elif hidden_only:
        matrices = []
    chosen = {id(p) for p in matrices}
    return matrices, [p for p in params if id(p) not in chosen]


class MuonAdamW(torch.optim.Optimizer):
    """``torch.optim.Muon`` on the hidden matrices (conv kernels flattened to 2-D), ``torch.optim.AdamW`` on the rest.

    Takes what the job's rule optimizers take (params, lr, weight_decay; total_steps and seed are accepted and
    unused), so a task trains it exactly as it trains a discovered rule.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        total_steps: int | None = None,
        seed: int = 0,
        hidden_only: bool = True,
    ):
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay})
        self._views: list[tuple[torch.Tensor, torch.Tensor]] = []  # (parameter, its 2-D view Muon steps)
        muon_groups, adamw_groups = [], []
        for index, group in enumerate(self.param_groups):
            matrices, rest = split_params(group["params"], hidden_only)
            views = [self._as_matrix(p) for p in matrices]
            if views:
                muon_groups.append(
                    {"params": views, "lr": group["lr"], "weight_decay": group["weight_decay"], "outer": index}
                )
            if rest:
                adamw_groups.append(
                    {"params": rest, "lr": group["lr"], "weight_decay": group["weight_decay"], "outer": index}
                )
        self.muon = (
            torch.optim.Muon(muon_groups, lr=lr, momentum=MUON_MOMENTUM, nesterov=True, adjust_lr_fn=ADJUST_LR)
            if muon_groups
            else None
        )
        self.adamw = torch.optim.AdamW(adamw_groups, lr=lr) if adamw_groups else None

    def _as_matrix(self, p: torch.Tensor) -> torch.Tensor:
        if p.ndim == 2:
            return p
        view = torch.nn.Parameter(p.data.view(p.shape[0], -1), requires_grad=False)  # shares p's storage
        self._views.append((p, view))
        return view

    def inner(self) -> list[torch.optim.Optimizer]:
        return [o for o in (self.muon, self.adamw) if o is not None]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for p, view in self._views:
            view.grad = None if p.grad is None else p.grad.view(view.shape)
        for optimizer in self.inner():
            for group in optimizer.param_groups:  # follow lr schedulers acting on this optimizer's groups
                outer = self.param_groups[group["outer"]]
                group["lr"], group["weight_decay"] = outer["lr"], outer["weight_decay"]
            optimizer.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none)
        for _, view in self._views:
            view.grad = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "outer": super().state_dict(),
            **{name: o.state_dict() for name, o in (("muon", self.muon), ("adamw", self.adamw)) if o is not None},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict["outer"])
        for name, optimizer in (("muon", self.muon), ("adamw", self.adamw)):
            if optimizer is not None:
                optimizer.load_state_dict(state_dict[name])
