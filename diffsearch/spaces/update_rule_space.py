"""The space of update rules: top-down growth, rejection tests and equivalence hashing, as in ENOS
(Wang et al., NeurIPS 2022).

- ``children(partial)``: tokens that may fill the leftmost open slot (length bound + redundancy rules).
- ``key(program)``: a hash of the program's outputs on one fixed random probe. Equivalent programs
  (``x * 2`` and ``x + x``, ``sign(sign(g))`` and ``sign(g)``) get the same key, far faster than a
  symbolic check; ``sympy_equal`` is the optional exact check.
- ``check(program)``: None for a program worth training, else why not: the descent test (mean cosine
  between the update and the gradient over random Gaussian gradients > 0.15) and non-degeneracy (finite,
  both signs, depends on the gradient).

Probes are matrices (the hash probe 4 x 16, each descent probe 5 x 5) so the matrix operators (orth, rownorm,
colnorm; ``matrix_ops=True``) are hashed and tested on what they act on; elementwise programs get the same
keys and verdicts as on flat probes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import sympy as sp
import torch

from diffsearch.errors import UsageError
from diffsearch.spaces.update_rules import (
    ARITY,
    BETA1,
    BETA2,
    CONSTANTS,
    DECAYS,
    GRADIENT_LEAVES,
    LEAVES,
    MATRIX_TOKENS,
    TOKENS,
    Program,
    RuleState,
    evaluate,
    forbidden,
    frontier,
    parse,
    to_text,
    violations,
)

PAD = "."  # unused token positions in the trial params
PROBE_SHAPE = (4, 16)  # the hash probe: a non-square matrix, so rownorm and colnorm differ on it


@dataclass(frozen=True)
class UpdateRuleSpace:
    max_length: int = 10  # tokens; the super-tree's depth
    descent_threshold: float = 0.15
    descent_probes: int = 25  # random gradient sequences of ``descent_dim`` numbers (reference: 25 x 25)
    descent_dim: int = 25
    descent_steps: int = 5  # steps of state (moments) each probe runs
    probe_size: int = 64  # = 4 x 16 (PROBE_SHAPE)
    matrix_ops: bool = False  # grow orth, rownorm, colnorm and mn too (a study's token choices change)
    name: str = "update-rules"
    description: str = "expression trees of optimizer update rules (ENOS, Wang et al., NeurIPS 2022)"

    @property
    def tokens(self) -> tuple[str, ...]:
        return TOKENS if self.matrix_ops else tuple(t for t in TOKENS if t not in MATRIX_TOKENS)

    # ----------------------------------------------------------------------------- growth
    def children(self, partial: Sequence[str]) -> list[str]:
        front = frontier(partial)
        if front is None:
            return []
        room = self.max_length - len(partial) - 1 - (front.open_slots - 1)  # tokens left for new slots
        return [
            t
            for t in self.tokens
            if ARITY[t] <= room and forbidden(front.parent, front.index, front.sibling, t) is None
        ]

    def is_complete(self, partial: Sequence[str]) -> bool:
        return len(partial) > 0 and frontier(partial) is None

    def complete_randomly(self, partial: Sequence[str], rng: np.random.Generator) -> Program | None:
        """Fill the open slots uniformly among allowed tokens; None at a dead end (no token fits)."""
        program = list(partial)
        while not self.is_complete(program):
            options = self.children(program)
            if not options:
                return None
            program.append(options[int(rng.integers(len(options)))])
        return tuple(program)

    def sample(self, rng: np.random.Generator) -> Program:
        while True:
            program = self.complete_randomly((), rng)
            if program is not None:
                return program

    # ----------------------------------------------------------------------- (de)serialise
    def validate(self, program: Sequence[str]) -> None:
        if not self.is_complete(program):
            raise UsageError(f"incomplete program {' '.join(program)}")
        if len(program) > self.max_length:
            raise UsageError(f"{to_text(program)!r} has {len(program)} tokens, more than {self.max_length}")

    def to_params(self, program: Sequence[str]) -> dict[str, str]:
        return {f"token{i}": program[i] if i < len(program) else PAD for i in range(self.max_length)}

    def from_params(self, params: dict[str, str]) -> Program:
        return tuple(params[f"token{i}"] for i in range(self.max_length) if params[f"token{i}"] != PAD)

    def distributions(self) -> dict[str, Any]:
        import optuna

        choice = optuna.distributions.CategoricalDistribution((*self.tokens, PAD))
        return {f"token{i}": choice for i in range(self.max_length)}

    # ---------------------------------------------------------------------- equivalence
    def _probe(self) -> dict[str, Any]:
        """One fixed random state of every leaf, consistent where the leaves are related.

        Magnitudes are log-uniform over many decades so that clip (+-1e-3) and the bias corrections
        (small t) are not constant on the probe; otherwise clip(m1) and clip(m1h) would collide.
        """
        rng = np.random.default_rng(20231004)
        n = self.probe_size
        as_t = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float64).reshape(PROBE_SHAPE))  # noqa: E731
        signed = lambda: rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-5, 1, n)  # noqa: E731
        t = np.round(10.0 ** rng.uniform(0, 3, n))
        g, m1, w = signed(), signed(), signed()
        m2 = 10.0 ** rng.uniform(-6, 1, n)
        frac = t / 1000
        return {
            "g": as_t(g),
            "g2": as_t(g * g),
            "sg": as_t(np.sign(g)),
            "m1": as_t(m1),
            "m2": as_t(m2),
            "sm1": as_t(np.sign(m1)),
            "m1h": as_t(m1 / (1 - BETA1**t)),
            "m2h": as_t(m2 / (1 - BETA2**t)),
            "ml": as_t(signed()),
            "w": as_t(w),
            "1": 1.0,
            "2": 2.0,
            "ld": as_t(1 - frac),
            "cd": as_t(0.5 * (1 + np.cos(np.pi * frac))),
            "rd": as_t(0.5 * (1 + np.cos(np.pi * ((4 * frac) % 1)))),
            "noise": as_t(signed()),
            "mn": as_t(signed()),
        }

    def outputs(self, program: Sequence[str]) -> np.ndarray:
        if not hasattr(self, "_probe_cache"):
            object.__setattr__(self, "_probe_cache", self._probe())
        with np.errstate(all="ignore"):
            value = evaluate(program, self._probe_cache, torch.Generator().manual_seed(7))
        return np.broadcast_to(np.asarray(value, dtype=np.float64), PROBE_SHAPE).reshape(-1)

    def key(self, program: Sequence[str]) -> str:
        """Hash of the outputs on the probe, mantissas rounded to 28 bits (so x*2 == x+x)."""
        out = self.outputs(program)
        finite = np.isfinite(out)
        mantissa, exponent = np.frexp(np.where(finite, out, 0.0))
        mantissa = np.round(mantissa * 2.0**28) + 0.0  # relative rounding, no overflow; -0.0 -> 0.0
        carry = np.abs(mantissa) == 2.0**28  # 0.99999999 rounded up: write it as 0.5 * 2^(e+1)
        mantissa, exponent = np.where(carry, mantissa / 2, mantissa), np.where(carry, exponent + 1, exponent)
        code = np.where(finite, 0, np.where(np.isnan(out), 1, np.sign(out) + 3))
        blob = mantissa.tobytes() + exponent.astype(np.int32).tobytes() + code.astype(np.int8).tobytes()
        return hashlib.sha1(blob).hexdigest()[:16]

    # -------------------------------------------------------------------------- rejection
    def descent_cosine(self, program: Sequence[str], seed: int = 0) -> tuple[float, np.ndarray]:
        """Mean cosine(update, gradient) over random Gaussian gradient sequences, and the updates seen."""
        gen = torch.Generator().manual_seed(seed)
        side = max(d for d in range(1, int(self.descent_dim**0.5) + 1) if self.descent_dim % d == 0)
        matrix = (side, self.descent_dim // side)  # each probe a matrix (5 x 5), so orth sees one
        shape = (self.descent_probes, self.descent_dim)
        w = torch.randn(shape, generator=gen, dtype=torch.float64).view(-1, *matrix)
        state = RuleState(program, w, total_steps=100, generator=gen)
        cosines, updates = [], []
        for _ in range(self.descent_steps):
            g = torch.randn(shape, generator=gen, dtype=torch.float64).view(-1, *matrix)
            u = torch.as_tensor(evaluate(program, state.leaves(g, w), gen), dtype=torch.float64).expand(g.shape)
            u, flat_g = u.reshape(shape), g.reshape(shape)
            updates.append(u)
            cosines.append(torch.nn.functional.cosine_similarity(u, flat_g, dim=1, eps=1e-30))
        return float(torch.stack(cosines).mean()), torch.stack(updates).numpy()

    def check(self, program: Sequence[str]) -> str | None:
        """None if the program should be trained; otherwise the reason it is rejected."""
        if not GRADIENT_LEAVES & set(program):
            return "degenerate: does not read the gradient"
        with np.errstate(all="ignore"):
            cosine, updates = self.descent_cosine(program)
        if not np.isfinite(updates).all():
            return "degenerate: non-finite update"
        if not (updates.min() < 0 < updates.max()):
            return "degenerate: the update has one sign only"
        if np.ptp(updates) < 1e-12:
            return "degenerate: constant update"
        if not cosine > self.descent_threshold:
            return f"descent test: mean cosine {cosine:.3f} <= {self.descent_threshold}"
        return None


# -------------------------------------------------------------------------------------- sympy
# nonnegative=False would mean "negative" to sympy, so that assumption is only given where it holds
_SYMBOLS = {
    leaf: sp.Symbol(leaf, real=True, **({"nonnegative": True} if leaf in ("g2", "m2", "m2h", "ld", "cd", "rd") else {}))
    for leaf in LEAVES
    if leaf not in CONSTANTS
}
# leaves that are functions of other leaves, so the exact check sees sign(g) == sg
_DERIVED = {"sg": sp.sign(_SYMBOLS["g"]), "sm1": sp.sign(_SYMBOLS["m1"]), "g2": _SYMBOLS["g"] ** 2}
_CLIP, _DROP, _SPOW = sp.Function("clip"), sp.Function("drop"), sp.Function("spow")
_MATRIX = {op: sp.Function(op) for op in ("orth", "rownorm", "colnorm")}


def to_sympy(program: Sequence[str]) -> sp.Expr:
    """The program as a sympy expression (safe division and log|x| shown without their 1e-8)."""
    stack: list[sp.Expr] = []
    unary = {
        "neg": lambda x: -x,
        "exp": sp.exp,
        "log": lambda x: sp.log(sp.Abs(x)),
        "sqrt": lambda x: sp.sqrt(sp.Abs(x)),
        "sign": sp.sign,
        "clip": _CLIP,
        "drop": _DROP,
        **_MATRIX,
    }
    binary = {
        "add": lambda x, y: x + y,
        "sub": lambda x, y: x - y,
        "mul": lambda x, y: x * y,
        "div": lambda x, y: x / y,
        "pow": _SPOW,
    }
    for token in reversed(program):
        if ARITY[token] == 0:
            stack.append(sp.Integer(int(token)) if token in CONSTANTS else _DERIVED.get(token, _SYMBOLS[token]))
        elif ARITY[token] == 1:
            stack.append(unary[token](stack.pop()))
        else:
            x = stack.pop()
            stack.append(binary[token](x, stack.pop()))
    return stack[0]


def formula(program: Sequence[str]) -> str:
    """Canonical printed form (sympy's ordering of terms)."""
    return sp.sstr(to_sympy(program))


def sympy_equal(a: Sequence[str], b: Sequence[str]) -> bool:
    """Exact (symbolic) equivalence; slow, for checks and for the hashing-vs-sympy benchmark."""
    return sp.simplify(to_sympy(a) - to_sympy(b)) == 0


__all__ = ["UpdateRuleSpace", "to_sympy", "formula", "sympy_equal", "parse", "to_text", "violations", "DECAYS"]
