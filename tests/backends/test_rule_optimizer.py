"""The torch optimizer an update rule becomes: hand-designed rules match torch.optim and the published
formulas, state only for the moments a rule reads, and a rule trains a model."""

import math

import numpy as np
import pytest
import torch

from diffsearch.errors import UsageError
from diffsearch.optimizers.rules import HAND_DESIGNED, RuleOptimizer, from_expr

SHAPES = [(3, 4), (5,)]
STEPS = 25


def gradient_sequence(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES] for _ in range(STEPS)]


def start_params(seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=torch.float64, requires_grad=True) for s in SHAPES]


def run(make_optimizer):
    """Parameters after each step of an optimizer fed the fixed gradient sequence."""
    params = start_params()
    opt = make_optimizer(params)
    history = []
    for grads in gradient_sequence():
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        history.append([p.detach().clone() for p in params])
    return history


def assert_same(a, b, tol=1e-6):
    for step_a, step_b in zip(a, b):
        for x, y in zip(step_a, step_b):
            assert torch.allclose(x, y, atol=tol, rtol=0), (x - y).abs().max()


def dsl(name, lr, **kw):
    expr, wd = HAND_DESIGNED[name]
    return lambda params: from_expr(expr, params, lr=lr, weight_decay=wd, **kw)


@pytest.mark.parametrize(
    "name, reference",
    [
        ("SGD", lambda p: torch.optim.SGD(p, lr=0.05)),
        ("Adam", lambda p: torch.optim.Adam(p, lr=0.05, eps=1e-8)),
        ("AdamW", lambda p: torch.optim.AdamW(p, lr=0.05, eps=1e-8, weight_decay=0.01)),
        ("RMSprop", lambda p: torch.optim.RMSprop(p, lr=0.05, alpha=0.999, eps=1e-8)),
    ],
)
def test_hand_designed_match_torch_optim(name, reference):
    assert_same(run(dsl(name, 0.05)), run(reference))


def test_momentum_matches_torch_sgd_momentum():
    # m1 is an EMA (0.1 g + 0.9 m); torch's buffer is g + 0.9 buf = 10 x m1, hence lr x 10
    assert_same(run(dsl("momentum", 0.5)), run(lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)))


def published(name, lr=0.01, total=STEPS):
    """Lion (Chen et al. 2023), PowerSign and AddSign (Bello et al. 2017) written out in NumPy."""
    w = [p.detach().numpy().copy() for p in start_params()]
    m = [np.zeros_like(x) for x in w]
    history = []
    for t, grads in enumerate(gradient_sequence(), start=1):
        for i, g in enumerate(g.numpy() for g in grads):
            if name == "Lion":
                c = 0.9 * m[i] + 0.1 * g
                w[i] = w[i] - lr * np.sign(c)
                m[i] = 0.99 * m[i] + 0.01 * g
                continue
            m[i] = 0.9 * m[i] + 0.1 * g
            f = 1 - t / total if name.endswith("-ld") else 1.0
            agree = np.sign(g) * np.sign(m[i])
            factor = np.exp(f * agree) if name.startswith("PowerSign") else 1 + f * agree
            w[i] = w[i] - lr * factor * g
        history.append([torch.from_numpy(x.copy()) for x in w])
    return history


@pytest.mark.parametrize("name", ["Lion", "PowerSign", "PowerSign-ld", "AddSign", "AddSign-ld"])
def test_hand_designed_match_published_formulas(name):
    assert_same(run(dsl(name, 0.01, total_steps=STEPS)), published(name))


def test_state_only_for_the_leaves_used():
    for expr, moments in (
        ("g", set()),
        ("m1h / sqrt(m2h)", {"m1", "m2"}),
        ("sign(ml)", {"mslow"}),
        ("exp(sg * sm1) * g", {"m1"}),
    ):
        params = start_params()
        opt = from_expr(expr, params, lr=0.1)
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
        assert set(opt.state[params[0]]["rule"].moments) == moments
        assert len(opt.state) == 1  # one state for the whole group: the rule runs on all parameters at once


def test_decay_needs_total_steps():
    with pytest.raises(UsageError, match="total number of steps"):
        opt = from_expr("ld * g", start_params(), lr=0.1)
        for p in opt.param_groups[0]["params"]:
            p.grad = torch.ones_like(p)
        opt.step()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_runs_on_cuda():
    params = [torch.zeros(4, device="cuda", requires_grad=True)]
    opt = from_expr("exp(ld * sg * sm1) * g + noise", params, lr=0.1, total_steps=10)
    params[0].grad = torch.ones(4, device="cuda")
    opt.step()
    assert params[0].is_cuda and torch.isfinite(params[0]).all()


def test_optimizer_trains_a_model():
    torch.manual_seed(0)
    x, y = torch.randn(256, 3), torch.randn(256, 1)
    model = torch.nn.Linear(3, 1)
    opt = RuleOptimizer(model.parameters(), "exp(ld * sg * sm1) * g", lr=0.05, total_steps=100)
    first = None
    for _ in range(100):
        loss = torch.nn.functional.mse_loss(model(x), y)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < first * 0.9 and math.isfinite(float(loss.detach()))
    assert "exp(ld * sg * sm1) * g" in repr(opt)


def test_muon_and_adamw_written_in_the_language_reproduce_torch():
    """orth(mn) on the matrices and m1h / sqrt(m2h) on the rest = torch.optim.Muon + torch.optim.AdamW."""
    from diffsearch.optimizers.rules import MUON_RULE

    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Linear(6, 10), torch.nn.Tanh(), torch.nn.Linear(10, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3)
        )

    ours, ref = model(), model()
    split = lambda m: ([p for p in m.parameters() if p.ndim == 2], [p for p in m.parameters() if p.ndim != 2])  # noqa: E731
    (mats, rest), (ref_mats, ref_rest) = split(ours), split(ref)
    language = [
        RuleOptimizer(mats, MUON_RULE[0], lr=0.02, weight_decay=MUON_RULE[1]),
        RuleOptimizer(rest, HAND_DESIGNED["AdamW"][0], lr=0.02, weight_decay=HAND_DESIGNED["AdamW"][1]),
    ]
    torch_own = [
        torch.optim.Muon(ref_mats, lr=0.02, weight_decay=0.01, adjust_lr_fn="match_rms_adamw"),
        torch.optim.AdamW(ref_rest, lr=0.02, weight_decay=0.01),
    ]
    for step in range(6):
        gen = torch.Generator().manual_seed(step)
        x, y = torch.randn(16, 6, generator=gen), torch.randn(16, 3, generator=gen)
        for m, optimizers in ((ours, language), (ref, torch_own)):
            m.zero_grad()
            torch.nn.functional.mse_loss(m(x), y).backward()
            for o in optimizers:
                o.step()
    for a, b, start in zip(ours.parameters(), ref.parameters(), model().parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
        assert not torch.equal(a, start)


def test_a_matrix_rule_sees_each_parameter_as_a_matrix():
    conv = torch.nn.Parameter(torch.zeros(4, 2, 3, 3))
    bias = torch.nn.Parameter(torch.zeros(4))
    opt = RuleOptimizer([conv, bias], "rownorm(g)", lr=1.0)
    conv.grad = torch.arange(72.0).view(4, 2, 3, 3) + 1
    bias.grad = torch.tensor([1.0, -2.0, 3.0, 4.0])
    opt.step()
    rms = conv.detach().view(4, -1).square().mean(1).sqrt()
    assert torch.allclose(rms, torch.ones(4)) and torch.allclose(
        bias.detach().square().mean().sqrt(), torch.tensor(1.0)
    )
