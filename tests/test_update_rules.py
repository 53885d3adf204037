import math

import numpy as np
import pytest
import torch

from diffsearch.errors import UsageError
from diffsearch.optim import HAND_DESIGNED, RuleOptimizer, from_expr
from diffsearch.spaces.update_rule_space import UpdateRuleSpace, formula, sympy_equal
from diffsearch.spaces.update_rules import parse, to_text, violations

SPACE = UpdateRuleSpace()
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


@pytest.mark.parametrize("name, reference", [
    ("SGD", lambda p: torch.optim.SGD(p, lr=0.05)),
    ("Adam", lambda p: torch.optim.Adam(p, lr=0.05, eps=1e-8)),
    ("AdamW", lambda p: torch.optim.AdamW(p, lr=0.05, eps=1e-8, weight_decay=0.01)),
    ("RMSprop", lambda p: torch.optim.RMSprop(p, lr=0.05, alpha=0.999, eps=1e-8)),
])
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
    for expr, moments in (("g", set()), ("m1h / sqrt(m2h)", {"m1", "m2"}), ("sign(ml)", {"mslow"}),
                          ("exp(sg * sm1) * g", {"m1"})):
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


def test_equivalent_programs_share_a_key():
    for a, b in (("g * 2", "g + g"), ("sign(sign(g))", "sign(g)"), ("sign(g)", "sg"),
                 ("m1h / sqrt(m2h) * 2", "m1h / sqrt(m2h) + m1h / sqrt(m2h)"), ("-(-g)", "g")):
        assert SPACE.key(parse(a)) == SPACE.key(parse(b)), (a, b)
    for a, b in (("g", "m1"), ("g * 2", "g"), ("exp(sg * sm1) * g", "(1 + sg * sm1) * g"), ("ld * g", "cd * g")):
        assert SPACE.key(parse(a)) != SPACE.key(parse(b)), (a, b)
    assert sympy_equal(parse("g * 2"), parse("g + g")) and sympy_equal(parse("sign(sign(g))"), parse("sg"))
    assert not sympy_equal(parse("g"), parse("m1"))


def test_constraints_applied_while_growing():
    assert violations(parse("sign(sign(g))")) == ["sign(sign(x))"]
    assert violations(parse("-(-g)")) and violations(parse("log(exp(g))")) and violations(parse("clip(clip(g))"))
    assert violations(parse("sign(ld) * g")) and violations(parse("g * sqrt(2)")) and violations(parse("(1 + 2) * g"))
    assert violations(parse("exp(ld * sg * sm1) * g")) == []
    assert "sign" not in SPACE.children(("sign",)) and "exp" not in SPACE.children(("log",))
    assert "1" not in SPACE.children(("mul", "2")) and "g" in SPACE.children(("mul", "2"))
    rng = np.random.default_rng(0)
    for _ in range(300):
        program = SPACE.sample(rng)
        assert len(program) <= SPACE.max_length and violations(program) == []


def test_max_length_bounds_growth():
    space = UpdateRuleSpace(max_length=4)
    assert all(t in ("g", "g2", "sg", "m1", "m2", "sm1", "m1h", "m2h", "ml", "w", "noise", "1", "2", "ld", "cd", "rd")
               for t in space.children(("add", "mul", "g")))  # 4th token must close the last open slot
    assert space.children(("add", "g")) and space.is_complete(("add", "g", "m1"))


def test_descent_test():
    assert "descent" in SPACE.check(parse("-g"))
    assert SPACE.check(parse("g")) is None and SPACE.check(parse("m1h / sqrt(m2h)")) is None
    for name, (expr, _) in HAND_DESIGNED.items():
        assert SPACE.check(parse(expr)) is None, name
    assert SPACE.check(parse("w")) is not None          # does not read the gradient
    assert SPACE.check(parse("g2")) is not None         # one sign only
    assert SPACE.check(parse("exp(exp(exp(exp(g2))))")) is not None  # overflows


def test_text_format_round_trips():
    for text in ("m1h / sqrt(m2h)", "exp(ld * sg * sm1) * g", "g - (m1 - w)", "g / (m1 * w)", "(g ** 2) ** m1",
                 "g ** m1 ** 2", "-(g + m1)", "-g ** 2", "(-g) ** 2", "sign(ml)", "(1 + ld * sg * sm1) * g"):
        assert to_text(parse(text)) == text
    assert parse("g ^ 2") == parse("g ** 2") == ("pow", "g", "2")
    assert parse("add(g, mul(2, m1))") == parse("g + 2 * m1")
    rng = np.random.default_rng(1)
    for _ in range(300):
        program = SPACE.sample(rng)
        assert parse(to_text(program)) == program
    assert formula(parse("(1 + sg * sm1) * g")) == "g*(sign(g)*sign(m1) + 1)"


@pytest.mark.parametrize("bad", ["m1h / (sqrt(m2h)", "", "foo * g", "3 * g", "exp(g, m1)", "g % 2", "g.real", "lambda: 1"])
def test_malformed_expressions_raise_usage_error(bad):
    with pytest.raises(UsageError):
        parse(bad)


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
