"""The exponential-decay schedule as a SymPy expression: the one source of truth.

Every evaluator in the package obtains its arithmetic from these expressions:
:func:`compile_expression` walks the SymPy tree once and returns a Python
function that calls a caller-supplied set of operations (``mul``, ``div``,
``pow``, ``floor``) for each node.  The oracle passes exact operations for the
``exact`` order and correctly rounded ones for the ``keras`` order; the error
bounds differentiate the same expressions.

>>> learning_rate(staircase=False)
decay_rate**(step/decay_steps)*initial_learning_rate
>>> learning_rate(staircase=True)
decay_rate**floor(step/decay_steps)*initial_learning_rate
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any, Protocol

import sympy as sp

__all__ = [
    "initial_learning_rate",
    "decay_steps",
    "decay_rate",
    "step",
    "ARGUMENTS",
    "exponent",
    "learning_rate",
    "Operations",
    "compile_expression",
]

initial_learning_rate, decay_steps, decay_rate, step = sp.symbols(
    "initial_learning_rate decay_steps decay_rate step", real=True
)

#: The argument order of every compiled function.
ARGUMENTS = (initial_learning_rate, decay_steps, decay_rate, step)


def exponent(staircase: bool) -> sp.Expr:
    """``step / decay_steps``, floored when ``staircase``."""
    p = step / decay_steps
    return sp.floor(p) if staircase else p


def learning_rate(staircase: bool) -> sp.Expr:
    """``initial_learning_rate * decay_rate ** exponent(staircase)``."""
    return initial_learning_rate * decay_rate ** exponent(staircase)


class Operations(Protocol):
    """The arithmetic a compiled expression is evaluated with."""

    def constant(self, value: Fraction) -> Any: ...
    def mul(self, a: Any, b: Any) -> Any: ...
    def div(self, a: Any, b: Any) -> Any: ...
    def pow(self, base: Any, exp: Any) -> Any: ...
    def floor(self, a: Any) -> Any: ...


Compiled = Callable[[Operations, Any, Any, Any, Any], Any]


def compile_expression(expr: sp.Expr) -> Compiled:
    """Turn ``expr`` (in the four :data:`ARGUMENTS`) into ``f(ops, I, D, r, s)``.

    A product with factors ``x**-1`` becomes a *division* by ``x`` (SymPy
    stores ``s/D`` as ``s * D**-1``; IEEE division is a different operation
    from multiplying by a rounded reciprocal, and the ``keras`` order needs
    the former).  Factors are applied in SymPy's canonical order.
    """
    index = {sym: i for i, sym in enumerate(ARGUMENTS)}

    def build(node: sp.Expr) -> Callable[[Operations, tuple[Any, ...]], Any]:
        if node in index:
            i = index[node]
            return lambda ops, args: args[i]
        if isinstance(node, sp.Rational):
            value = Fraction(int(node.p), int(node.q))
            return lambda ops, args: ops.constant(value)
        if isinstance(node, sp.floor):
            inner = build(node.args[0])
            return lambda ops, args: ops.floor(inner(ops, args))
        if isinstance(node, sp.Pow):
            base, exp = node.args
            if exp == -1:
                # A lone reciprocal: 1 / base.
                den = build(base)
                return lambda ops, args: ops.div(ops.constant(Fraction(1)), den(ops, args))
            b, e = build(base), build(exp)
            return lambda ops, args: ops.pow(b(ops, args), e(ops, args))
        if isinstance(node, sp.Mul):
            nums = [build(f) for f in node.args if not _is_reciprocal(f)]
            dens = [build(f.args[0]) for f in node.args if _is_reciprocal(f)]
            if not nums:
                nums = [lambda ops, args: ops.constant(Fraction(1))]

            def product(ops: Operations, args: tuple[Any, ...]) -> Any:
                acc = nums[0](ops, args)
                for f in nums[1:]:
                    acc = ops.mul(acc, f(ops, args))
                for d in dens:
                    acc = ops.div(acc, d(ops, args))
                return acc

            return product
        raise NotImplementedError(f"no evaluation rule for {type(node).__name__}: {node}")

    root = build(expr)

    def evaluate(ops: Operations, I: Any, D: Any, r: Any, s: Any) -> Any:  # noqa: E741, N803
        return root(ops, (I, D, r, s))

    evaluate.__doc__ = f"Evaluate {expr} with the given operations."
    return evaluate


def _is_reciprocal(node: sp.Expr) -> bool:
    return isinstance(node, sp.Pow) and node.args[1] == -1


#: Compiled schedules, indexed by ``staircase``.
COMPILED: dict[bool, Compiled] = {
    flag: compile_expression(learning_rate(flag)) for flag in (False, True)
}
