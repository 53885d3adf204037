"""The Muon baseline: torch's Muon on the hidden matrices (conv kernels as 2-D), AdamW on the rest."""

import math

import pytest
import torch

from diffsearch.optimizers.rules import baseline, baseline_names, make_optimizer
from diffsearch.optimizers.muon import MuonAdamW, split_params
from diffsearch.tasks.optimizer_tasks import make_task


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.GroupNorm(2, 4),
        torch.nn.SiLU(),
        torch.nn.Conv2d(4, 6, 3, padding=1),
        torch.nn.Flatten(),
        torch.nn.Linear(6 * 16, 12),
        torch.nn.SiLU(),
        torch.nn.Linear(12, 3),
    )


def _loss(model, step):
    gen = torch.Generator().manual_seed(step)
    x, y = torch.randn(8, 1, 4, 4, generator=gen), torch.randn(8, 3, generator=gen)
    return torch.nn.functional.mse_loss(model(x), y)


def test_split_sends_hidden_matrices_to_muon_and_the_ends_to_adamw():
    model = _model()
    matrices, rest = split_params(model.parameters())
    assert [tuple(p.shape) for p in matrices] == [(6, 4, 3, 3), (12, 96)]  # not the first conv nor the head
    assert len(matrices) + len(rest) == len(list(model.parameters()))
    assert all(p.ndim == 1 for p in rest if p is not model[0].weight and p is not model[7].weight)


def test_muon_adamw_matches_torch_muon_on_reshaped_kernels_and_adamw_on_the_rest():
    ours, ref = _model(), _model()
    opt = MuonAdamW(ours.parameters(), lr=0.02, weight_decay=0.01)
    matrices, rest = split_params(ref.parameters())
    flat = [torch.nn.Parameter(p.detach().reshape(p.shape[0], -1).clone()) for p in matrices]
    muon = torch.optim.Muon(flat, lr=0.02, weight_decay=0.01, adjust_lr_fn="match_rms_adamw")
    adamw = torch.optim.AdamW(rest, lr=0.02, weight_decay=0.01)
    for step in range(4):
        opt.zero_grad()
        _loss(ours, step).backward()
        opt.step()
        ref.zero_grad()
        _loss(ref, step).backward()
        for p, f in zip(matrices, flat):
            f.grad = p.grad.reshape(f.shape)
        muon.step(), adamw.step()
        with torch.no_grad():
            for p, f in zip(matrices, flat):
                p.copy_(f.view_as(p))
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b)
    moved = [not torch.equal(a, b) for a, b in zip(ours.parameters(), _model().parameters())]
    assert all(moved)  # every parameter was stepped by one of the two optimizers


def test_lr_schedulers_and_state_dict_reach_both_halves():
    model = _model()
    opt = make_optimizer("Muon", model.parameters(), lr=0.1, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for step in range(2):
        opt.zero_grad()
        _loss(model, step).backward()
        opt.step()
        if step == 0:
            schedule.step()
    assert [g["lr"] for o in opt.inner() for g in o.param_groups] == [0.05, 0.05]
    again = MuonAdamW(_model().parameters(), lr=0.1)
    again.load_state_dict(opt.state_dict())
    assert len(again.muon.state) == 2 and len(again.adamw.state) == len(opt.adamw.state) > 0


def test_muon_is_a_baseline_every_task_can_train():
    assert "Muon" in baseline_names() and baseline("Muon") == ("Muon", 0.01)
    task = make_task("toy2d-moons", scale=0.05, lr_grid=(1e-3, 1e-2))
    ev = task.evaluate("Muon", seed=0, weight_decay=0.01)
    assert math.isfinite(ev.score) and ev.score < task.initial_loss and ev.lr in (1e-3, 1e-2)
    with pytest.raises(Exception):
        make_optimizer("Nadam", _model().parameters(), lr=1e-3)  # not a baseline, not an expression
