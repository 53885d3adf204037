"""The language of update rules of ENOS (Wang et al., NeurIPS 2022): expression trees over gradients
and their moments.

A program is a prefix list of tokens (deap's representation: cheap to hash, grow and walk); the
optimizer steps ``w <- w - lr * update``. One text format, ordinary infix maths, parses and prints::

    m1h / sqrt(m2h)                     Adam  (safe division: x / (y + 1e-8))
    exp(ld * sg * sm1) * g              PowerSign with linear decay
    sign(ml)                            Lion

Matrix-aware operators (``orth``, ``rownorm``, ``colnorm``) act on each parameter's update viewed as a
matrix (rows = its first dimension, columns = the rest, as Muon views a conv kernel; a vector is one row);
with them and Muon's momentum ``mn`` the language writes Muon itself: ``orth(mn)``.

The search space is a super-tree grown top-down by filling the leftmost open slot (appending a token to
a prefix list does exactly that); ``max_length`` tokens bound every program. Redundancy constraints are
applied while growing; equivalent programs are found by evaluating them on one fixed random probe.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from diffsearch.errors import UsageError

Program = tuple[str, ...]

EPS = 1e-8  # safe division and log|x|
CLIP = 1e-3  # clip(x) = clamp(x, -1e-3, 1e-3), the reference operator
DROP = 0.1  # drop(x) = dropout(x, p=0.1)
BETA1, BETA2, BETA_SLOW = 0.9, 0.999, 0.99
RESTARTS = 4  # rd: cosine decay restarted this many times over training
BETA_MUON = 0.95  # mn: Muon's (torch's default) momentum
NS_COEFFICIENTS, NS_STEPS, NS_EPS = (3.4445, -4.7750, 2.0315), 5, 1e-7  # Muon's Newton-Schulz iteration

UNARY = {
    "neg": "-x",
    "exp": "e^x",
    "log": "log(|x| + 1e-8)",
    "sqrt": "sqrt(|x|)",
    "sign": "sign(x)",
    "clip": "clamp(x, -1e-3, 1e-3)",
    "drop": "dropout(x, p=0.1)",
    "orth": "the matrix x orthogonalised by 5 Newton-Schulz steps (Muon's), x 0.2 sqrt(max(rows, cols))",
    "rownorm": "each row of the matrix x divided by its RMS",
    "colnorm": "each column of the matrix x divided by its RMS",
}
BINARY = {"add": "x + y", "sub": "x - y", "mul": "x * y", "div": "x / (y + 1e-8)", "pow": "sign(x) |x|^y"}
LEAVES = {
    "g": "gradient",
    "g2": "g^2",
    "sg": "sign(g)",
    "m1": "EMA of g, decay 0.9",
    "m2": "EMA of g^2, decay 0.999",
    "sm1": "sign(m1)",
    "m1h": "bias-corrected m1 (Adam's m-hat)",
    "m2h": "bias-corrected m2 (Adam's v-hat)",
    "ml": "Lion's momentum: 0.9 * EMA(g, 0.99) + 0.1 * g",
    "w": "the weights",
    "1": "constant 1",
    "2": "constant 2",
    "ld": "linear decay 1 - t/T",
    "cd": "cosine decay (1 + cos(pi t/T)) / 2",
    "rd": f"cosine decay restarted {RESTARTS} times",
    "noise": "Gaussian noise, variance 0.01 / (1 + t)^0.55",
    "mn": "Muon's Nesterov momentum: 0.95 * EMA(g, 0.95) + 0.05 * g",
}
ARITY = {**{k: 1 for k in UNARY}, **{k: 2 for k in BINARY}, **{k: 0 for k in LEAVES}}
TOKENS = tuple(ARITY)
CONSTANTS = frozenset({"1", "2"})
DECAYS = frozenset({"ld", "cd", "rd"})
NONNEGATIVE = frozenset({"g2", "m2", "m2h"})
SIGNS = frozenset({"sg", "sm1"})
GRADIENT_LEAVES = frozenset({"g", "g2", "sg", "m1", "m2", "sm1", "m1h", "m2h", "ml", "mn"})
MATRIX_OPS = frozenset({"orth", "rownorm", "colnorm"})  # need each parameter's shape (see RuleOptimizer)
MATRIX_TOKENS = MATRIX_OPS | {"mn"}  # what --matrix-ops adds to the search space
NEEDS_TOTAL_STEPS = DECAYS
# which optimizer state each leaf needs (state exists only for the leaves a program uses)
LEAF_STATE = {
    "m1": ("m1",),
    "sm1": ("m1",),
    "m1h": ("m1",),
    "m2": ("m2",),
    "m2h": ("m2",),
    "ml": ("mslow",),
    "mn": ("mmuon",),
}


# ---------------------------------------------------------------------------------------- evaluation
class RuleState:
    """The moments a program reads, updated once per step; elementwise, so any tensor shape works."""

    def __init__(
        self,
        program: Sequence[str],
        like: torch.Tensor,
        total_steps: int | None = None,
        generator: torch.Generator | None = None,
    ):
        used = set(program)
        if used & NEEDS_TOTAL_STEPS and not total_steps:
            raise UsageError("this update rule uses a decay (ld, cd, rd): give the total number of steps")
        self.used, self.total_steps, self.generator, self.t = used, total_steps, generator, 0
        names = {name for leaf in used for name in LEAF_STATE.get(leaf, ())}
        self.moments = {name: torch.zeros_like(like) for name in sorted(names)}

    def leaves(self, g: torch.Tensor, w: torch.Tensor) -> dict[str, torch.Tensor | float]:
        """Advance one step with gradient ``g`` and return every leaf value the program needs."""
        self.t += 1
        t, mo, used, out = self.t, self.moments, self.used, {"g": g, "w": w, "1": 1.0, "2": 2.0}
        if "ml" in used:  # Lion: interpolate with the slow momentum first, then update it
            out["ml"] = mo["mslow"] * BETA1 + g * (1 - BETA1)
            mo["mslow"].mul_(BETA_SLOW).add_(g, alpha=1 - BETA_SLOW)
        if "mn" in used:  # torch.optim.Muon's ops, so orth(mn) reproduces it
            mo["mmuon"].lerp_(g, 1 - BETA_MUON)
            out["mn"] = g.lerp(mo["mmuon"], BETA_MUON)
        if "m1" in mo:
            mo["m1"].mul_(BETA1).add_(g, alpha=1 - BETA1)
            out["m1"], out["sm1"], out["m1h"] = mo["m1"], torch.sign(mo["m1"]), mo["m1"] / (1 - BETA1**t)
        if "m2" in mo:
            mo["m2"].mul_(BETA2).addcmul_(g, g, value=1 - BETA2)
            out["m2"], out["m2h"] = mo["m2"], mo["m2"] / (1 - BETA2**t)
        if "g2" in used:
            out["g2"] = g * g
        if "sg" in used:
            out["sg"] = torch.sign(g)
        if used & DECAYS:
            frac = min(t / self.total_steps, 1.0)
            out["ld"] = 1.0 - frac
            out["cd"] = 0.5 * (1 + math.cos(math.pi * frac))
            out["rd"] = 0.5 * (1 + math.cos(math.pi * ((RESTARTS * frac) % 1.0)))
        if "noise" in used:
            std = math.sqrt(0.01 / (1 + t) ** 0.55)
            out["noise"] = torch.randn(g.shape, generator=self.generator, device=g.device, dtype=g.dtype) * std
        return out


def _drop(x, generator):
    if not isinstance(x, torch.Tensor):
        return x
    keep = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) >= DROP
    return x * keep / (1 - DROP)


def _newton_schulz(x: torch.Tensor) -> torch.Tensor:
    """Muon's quintic Newton-Schulz iteration on the last two dims (bfloat16, as torch.optim.Muon computes it)."""
    a, b, c = NS_COEFFICIENTS
    tall = x.size(-2) > x.size(-1)
    y = x.bfloat16()
    y = y.mT if tall else y
    y = y / y.norm(dim=(-2, -1), keepdim=True).clamp(min=NS_EPS)
    for _ in range(NS_STEPS):
        if y.ndim == 2:  # torch's own ops, so the rounding matches torch.optim.Muon
            gram = y @ y.T
            y = torch.addmm(y, torch.addmm(gram, gram, gram, beta=b, alpha=c), y, beta=a)
        else:
            gram = y @ y.mT
            y = torch.baddbmm(
                y.flatten(0, -3),
                torch.baddbmm(gram.flatten(0, -3), gram.flatten(0, -3), gram.flatten(0, -3), beta=b, alpha=c),
                y.flatten(0, -3),
                beta=a,
            ).view(y.shape)
    return (y.mT if tall else y).to(x.dtype)


def _matrix(x):
    """A vector is one row; a tensor's last two dims are the matrix (leading dims: a batch of probes)."""
    return x.unsqueeze(0) if x.ndim == 1 else x


def _orth(x, _):
    if not isinstance(x, torch.Tensor) or x.ndim == 0:
        return x
    m = _matrix(x)
    return (_newton_schulz(m) * (0.2 * math.sqrt(max(m.shape[-2:])))).view_as(x)


def _rms_norm(dim: int) -> Callable:
    def norm(x, _):
        if not isinstance(x, torch.Tensor) or x.ndim == 0:
            return x
        m = _matrix(x)
        return (m / (m.square().mean(dim=dim, keepdim=True).sqrt() + EPS)).view_as(x)

    return norm


_UNARY_FN: dict[str, Callable] = {
    "neg": lambda x, _: -x,
    "exp": lambda x, _: torch.exp(x) if isinstance(x, torch.Tensor) else math.exp(x),
    "log": lambda x, _: torch.log(torch.abs(x) + EPS) if isinstance(x, torch.Tensor) else math.log(abs(x) + EPS),
    "sqrt": lambda x, _: torch.sqrt(torch.abs(x)) if isinstance(x, torch.Tensor) else math.sqrt(abs(x)),
    "sign": lambda x, _: torch.sign(x) if isinstance(x, torch.Tensor) else float(np.sign(x)),
    "clip": lambda x, _: torch.clamp(x, -CLIP, CLIP) if isinstance(x, torch.Tensor) else min(max(x, -CLIP), CLIP),
    "drop": _drop,
    "orth": _orth,
    "rownorm": _rms_norm(-1),
    "colnorm": _rms_norm(-2),
}


def _pow(x, y):
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    return torch.sign(x) * torch.abs(x) ** y


_BINARY_FN: dict[str, Callable] = {
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "div": lambda x, y: x / (y + EPS),
    "pow": _pow,
}


def evaluate(program: Sequence[str], leaves: dict, generator: torch.Generator | None = None):
    """Value of a prefix program given its leaf values (tensors or floats), evaluated right to left."""
    stack: list = []
    for token in reversed(program):
        arity = ARITY[token]
        if arity == 0:
            stack.append(leaves[token])
        elif arity == 1:
            stack.append(_UNARY_FN[token](stack.pop(), generator))
        else:
            x = stack.pop()
            stack.append(_BINARY_FN[token](x, stack.pop()))
    return stack[0]


# ------------------------------------------------------------------------------------ text format
_PREC = {"add": 1, "sub": 1, "mul": 2, "div": 2, "neg": 3, "pow": 4}
_SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": " ** "}
_AST_BINARY = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}


def subtree_end(program: Sequence[str], start: int) -> int:
    """Index one past the subtree that starts at ``start``."""
    need, i = 1, start
    while need:
        need += ARITY[program[i]] - 1
        i += 1
    return i


def _infix(program: Sequence[str], start: int) -> tuple[str, int, int]:
    """(text, precedence, end) of the subtree at ``start``; parentheses only where parsing needs them."""
    token = program[start]
    arity = ARITY[token]
    if arity == 0:
        return token, 5, start + 1
    a, pa, end = _infix(program, start + 1)
    if token == "neg":
        return ("-" + (a if pa >= 3 else f"({a})")), 3, end
    if arity == 1:
        return f"{token}({a})", 5, end
    b, pb, end = _infix(program, end)
    p = _PREC[token]
    if token == "pow":  # right-associative
        left, right = (a if pa > p else f"({a})"), (b if pb >= p else f"({b})")
        return f"{left}{_SYMBOL[token]}{right}", p, end
    # left-associative: the right operand needs brackets at equal precedence (a - (b - c), a / (b * c))
    left, right = (a if pa >= p else f"({a})"), (b if pb > p else f"({b})")
    return f"{left} {_SYMBOL[token]} {right}", p, end


def to_text(program: Sequence[str]) -> str:
    return _infix(program, 0)[0]


def parse(text: str) -> Program:
    """Parse the infix text format (``^`` is accepted for ``**``); raise UsageError on anything else."""
    if not isinstance(text, str) or not text.strip():
        raise UsageError("empty update rule")
    try:
        tree = ast.parse(text.strip().replace("^", "**"), mode="eval").body
    except SyntaxError as exc:
        raise UsageError(f"malformed update rule {text!r}: {exc.msg} at column {exc.offset}") from None
    out: list[str] = []

    def walk(node: ast.AST) -> None:
        if isinstance(node, ast.BinOp) and type(node.op) in _AST_BINARY:
            out.append(_AST_BINARY[type(node.op)])
            walk(node.left)
            walk(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            if isinstance(node.op, ast.USub):
                out.append("neg")
            walk(node.operand)
        elif isinstance(node, ast.Name) and node.id in LEAVES:
            out.append(node.id)
        elif isinstance(node, ast.Constant) and not isinstance(node.value, bool) and node.value in (1, 2):
            out.append(str(int(node.value)))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ARITY
            and ARITY[node.func.id] > 0
            and not node.keywords
        ):
            if len(node.args) != ARITY[node.func.id]:
                raise UsageError(
                    f"malformed update rule {text!r}: {node.func.id} takes "
                    f"{ARITY[node.func.id]} argument(s), got {len(node.args)}"
                )
            out.append(node.func.id)
            for arg in node.args:
                walk(arg)
        else:
            what = ast.unparse(node) if hasattr(ast, "unparse") else type(node).__name__
            raise UsageError(
                f"malformed update rule {text!r}: {what!r} is not in the language (leaves: "
                f"{', '.join(LEAVES)}; functions: {', '.join(list(UNARY) + list(BINARY))}; "
                "operators + - * / **)"
            )

    walk(tree)
    return tuple(out)


# ----------------------------------------------------------------------------------- constraints
def forbidden(parent: str | None, index: int, sibling: Program | None, token: str) -> str | None:
    """Why ``token`` may not fill child ``index`` of ``parent`` (None when it may). Applied while growing."""
    if parent is None:
        return "a constant update" if token in CONSTANTS | DECAYS else None
    if ARITY[parent] == 1:
        if token in CONSTANTS:
            return f"{parent} of a constant"
        if token == parent and parent in ("neg", "sign", "clip", "drop", *MATRIX_OPS):
            return f"{parent}({parent}(x))"
        if parent == "log" and token == "exp":
            return "log(exp(x))"
        if parent in ("sign", "clip", "drop", "log", *MATRIX_OPS) and token in DECAYS:
            return f"{parent} of a decay"
        if parent == "sign" and token in SIGNS | NONNEGATIVE | {"neg", "clip", "exp", "sqrt"}:
            return f"sign({token}) simplifies"
        return None
    if index == 1 and sibling is not None and len(sibling) == 1:
        if sibling[0] in CONSTANTS | DECAYS and token in CONSTANTS | DECAYS:
            return "an operation on two constants"
        if parent in ("sub", "div") and sibling[0] == token and ARITY[token] == 0:
            return f"x {_SYMBOL[parent].strip()} x"
    return None


@dataclass
class _Frontier:
    parent: str | None  # op whose slot is open next (None: the root)
    index: int  # which of its children
    sibling: Program | None  # the first child, when the open slot is the second
    open_slots: int


def frontier(program: Sequence[str]) -> _Frontier | None:
    """The leftmost open slot of a partial program, or None when the program is complete."""
    if not program:
        return _Frontier(None, 0, None, 1)
    stack: list[list] = []  # [token, remaining slots, start indices of its children]
    for i, token in enumerate(program):
        if stack:
            stack[-1][1] -= 1
            stack[-1][2].append(i)
        elif i:
            raise ValueError(f"tokens after a complete program: {program}")
        if ARITY[token]:
            stack.append([token, ARITY[token], []])
        else:
            while stack and stack[-1][1] == 0:
                stack.pop()
    if not stack:
        return None
    token, remaining, starts = stack[-1]
    index = ARITY[token] - remaining
    sibling = tuple(program[starts[0] : subtree_end(program, starts[0])]) if index == 1 else None
    return _Frontier(token, index, sibling, sum(frame[1] for frame in stack))


def violations(program: Sequence[str]) -> list[str]:
    """Every growth constraint a complete program breaks (for programs made by mutation or by hand)."""
    found = []
    for i in range(len(program)):
        front = frontier(program[:i])
        reason = forbidden(front.parent, front.index, front.sibling, program[i])
        if reason:
            found.append(reason)
    return found
