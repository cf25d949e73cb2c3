"""Self-checked exercises for the notebooks.

Each exercise has a key (``"02.tiny_rf"``), an *expected* function that computes the right answer
with fcnlib, and a *solution* function that reaches it by another route (by hand, as a learner
would). A notebook cell looks like::

    answer = None  # ✏️ your answer here
    if answer is None and solutions:      # `solutions` is a papermill parameter
        answer = exercises.solution("02.tiny_rf")
    exercises.check("02.tiny_rf", answer)

``check`` says "not attempted" for ``None``, "correct" for a right answer, and raises
:class:`ExerciseError` with the exercise's hint for a wrong one. Modules register their exercises
with the :func:`expected` and :func:`register` decorators; ``fcnlib.exercises.load(stem)`` imports
them (they live in ``fcnlib/exercise_bank/<stem>.py``).
"""
from __future__ import annotations

import importlib
import inspect
import math

import torch

_EXPECTED: dict[str, tuple] = {}
_SOLUTION: dict[str, callable] = {}


class ExerciseError(AssertionError):
    """A wrong answer to an exercise; the message says what was expected in kind and a hint."""


def expected(key: str, hint: str = "", tol: float = 1e-6):
    def deco(fn):
        _EXPECTED[key] = (fn, hint, tol)
        return fn
    return deco


def register(key: str):
    """Decorator registering ``fn`` as the reference solution of exercise ``key``."""
    def deco(fn):
        _SOLUTION[key] = fn
        return fn
    return deco


def solution(key: str):
    """The reference solution's answer to exercise ``key``."""
    if key not in _SOLUTION:
        raise KeyError(f"no solution registered for {key!r}")
    return _SOLUTION[key]()


def show_solution(key: str) -> str:
    """The source of the reference solution (for instructors, or after trying)."""
    return inspect.getsource(_SOLUTION[key])


def load(stem: str) -> None:
    """Import the exercise bank of notebook ``stem`` (e.g. ``"02"``) so its keys are registered."""
    importlib.import_module(f"fcnlib.exercise_bank.ex{stem}")


def _equal(a, b, tol) -> bool:
    if isinstance(b, torch.Tensor) or isinstance(a, torch.Tensor):
        a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
        return a.shape == b.shape and torch.allclose(a, b, atol=tol, rtol=tol)
    if isinstance(b, dict):
        return isinstance(a, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k], tol) for k in b)
    if isinstance(b, (list, tuple)):
        return isinstance(a, (list, tuple)) and len(a) == len(b) and all(_equal(x, y, tol) for x, y in zip(a, b))
    if isinstance(b, float) or isinstance(a, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=tol, abs_tol=tol)
        except (TypeError, ValueError):
            return False
    return a == b


def check(key: str, answer) -> bool:
    """Check ``answer`` against the expected value of exercise ``key`` (computed, never typed in)."""
    if key not in _EXPECTED:
        raise KeyError(f"no exercise {key!r}: known ones are {sorted(_EXPECTED)}")
    fn, hint, tol = _EXPECTED[key]
    if answer is None:
        print(f"✏️  Exercise {key}: not attempted yet — replace `answer = None` with your answer.")
        return False
    want = fn()
    if not _equal(answer, want, tol):
        raise ExerciseError(f"Exercise {key}: {answer!r} is not right. {hint}".strip())
    print(f"✅ Exercise {key}: correct.")
    return True
