"""The update-rule space: its grammar and text format, canonical keys, growth constraints, the descent check."""

import numpy as np
import pytest

from diffsearch.errors import UsageError
from diffsearch.optimizers.rules import HAND_DESIGNED
from diffsearch.spaces.update_rule_space import UpdateRuleSpace, formula, sympy_equal
from diffsearch.spaces.update_rules import parse, to_text, violations

SPACE = UpdateRuleSpace()


def test_equivalent_programs_share_a_key():
    for a, b in (
        ("g * 2", "g + g"),
        ("sign(sign(g))", "sign(g)"),
        ("sign(g)", "sg"),
        ("m1h / sqrt(m2h) * 2", "m1h / sqrt(m2h) + m1h / sqrt(m2h)"),
        ("-(-g)", "g"),
    ):
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
    assert all(
        t in ("g", "g2", "sg", "m1", "m2", "sm1", "m1h", "m2h", "ml", "w", "noise", "1", "2", "ld", "cd", "rd")
        for t in space.children(("add", "mul", "g"))
    )  # 4th token must close the last open slot
    assert space.children(("add", "g")) and space.is_complete(("add", "g", "m1"))


def test_descent_test():
    assert "descent" in SPACE.check(parse("-g"))
    assert SPACE.check(parse("g")) is None and SPACE.check(parse("m1h / sqrt(m2h)")) is None
    for name, (expr, _) in HAND_DESIGNED.items():
        assert SPACE.check(parse(expr)) is None, name
    assert SPACE.check(parse("w")) is not None  # does not read the gradient
    assert SPACE.check(parse("g2")) is not None  # one sign only
    assert SPACE.check(parse("exp(exp(exp(exp(g2))))")) is not None  # overflows


def test_text_format_round_trips():
    for text in (
        "m1h / sqrt(m2h)",
        "exp(ld * sg * sm1) * g",
        "g - (m1 - w)",
        "g / (m1 * w)",
        "(g ** 2) ** m1",
        "g ** m1 ** 2",
        "-(g + m1)",
        "-g ** 2",
        "(-g) ** 2",
        "sign(ml)",
        "(1 + ld * sg * sm1) * g",
    ):
        assert to_text(parse(text)) == text
    assert parse("g ^ 2") == parse("g ** 2") == ("pow", "g", "2")
    assert parse("add(g, mul(2, m1))") == parse("g + 2 * m1")
    rng = np.random.default_rng(1)
    for _ in range(300):
        program = SPACE.sample(rng)
        assert parse(to_text(program)) == program
    assert formula(parse("(1 + sg * sm1) * g")) == "g*(sign(g)*sign(m1) + 1)"


@pytest.mark.parametrize(
    "bad", ["m1h / (sqrt(m2h)", "", "foo * g", "3 * g", "exp(g, m1)", "g % 2", "g.real", "lambda: 1"]
)
def test_malformed_expressions_raise_usage_error(bad):
    with pytest.raises(UsageError):
        parse(bad)


# ------------------------------------------------------------------------------ matrix operators
MATRIX = UpdateRuleSpace(matrix_ops=True)


def test_matrix_ops_are_grown_only_when_asked_and_leave_old_keys_alone():
    assert not {"orth", "rownorm", "colnorm", "mn"} & set(SPACE.children(()))
    assert {"orth", "rownorm", "colnorm", "mn"} <= set(MATRIX.children(()))
    assert "orth" not in SPACE.distributions()["token0"].choices  # studies without them keep their choices
    # keys as stored in the committed benchmark ledger before the probes became matrices
    assert (
        SPACE.key(parse("m1h / sqrt(m2h)")) == "05280464aabf2590" and SPACE.key(parse("sign(ml)")) == "b64d34d600f42126"
    )
    assert "orth(orth(x))" in violations(parse("orth(orth(g))")) and violations(parse("rownorm(ld) * g"))


def test_matrix_ops_are_told_apart_by_the_matrix_probe_and_tested_for_descent():
    keys = {MATRIX.key(parse(e)) for e in ("g", "orth(g)", "rownorm(g)", "colnorm(g)", "orth(mn)", "orth(m1)")}
    assert len(keys) == 6  # a non-square probe: rows and columns differ
    assert MATRIX.check(parse("orth(mn)")) is None and MATRIX.check(parse("rownorm(g) + colnorm(m1)")) is None
    assert "descent" in MATRIX.check(parse("-orth(mn)"))
    assert formula(parse("orth(mn)")) == "orth(mn)"


def test_orth_orthogonalises_each_matrix_of_a_batch():
    import torch

    from diffsearch.spaces.update_rules import evaluate

    x = torch.randn(3, 6, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = evaluate(parse("orth(g)"), {"g": x}) / (0.2 * 10**0.5)
    singular = torch.linalg.svdvals(out)
    assert singular.shape == (3, 6) and 0.5 < singular.min() and singular.max() < 1.5  # Muon's US'V^T
    rows = evaluate(parse("rownorm(g)"), {"g": x})
    assert torch.allclose(rows.square().mean(-1), torch.ones(3, 6, dtype=torch.float64))
