"""Self-checked exercises for the notebooks: answers to compute, and functions to write.

Two kinds, both registered by the notebook's exercise bank (``fcnlib/exercise_bank/exNN.py``):

* a **value** (``expected``): the learner computes a number, a tuple or a list; the expected value is
  computed with fcnlib, never typed in. Numbers count as right within a relative tolerance of
  ``REL_TOL`` (0.1%: ``0.6878`` for 0.687812… is right); a near miss is told apart from a wrong method
  (a rounding slip, a percentage for a fraction) ::

      answer = None  # ✏️ your answer here
      exercises.check("00.mean_iu", answer)

* a **function** (``function``): the learner writes the function that is the lesson, and it is run on
  several inputs against fcnlib's own; the first input where it differs is shown with its first
  differing index and the largest difference (as nn-zero-to-hero's ``cmp``) ::

      def bilinear_kernel(size):
          raise NotImplementedError  # ✏️ your code here
      exercises.check_function("03.bilinear_kernel", bilinear_kernel)

The reference solutions (a second route to each value, a learner's version of each function) are the
**instructor key**, ``fcnlib/exercise_key/exNN.py``, kept apart from the banks: ``load(stem, key=True)``
(the notebooks' ``solutions`` parameter, for batch runs) or the environment variable ``FCN_KEY`` (a
folder holding the key's files) loads it, and an unattempted exercise is then answered from the key.
The student edition (``python -m fcnlib.edition``) ships without the key.
"""
from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys
from pathlib import Path

import torch

REL_TOL = 1e-3        # a numeric answer within 0.1% of the expected value is right
_EXPECTED: dict[str, tuple] = {}   # key → (expected fn, hint, tolerance)
_FUNCTIONS: dict[str, tuple] = {}  # key → (reference fn, cases fn, hint)
_KEY: dict[str, callable] = {}     # key → the instructor key's solution (loaded on request only)


class ExerciseError(AssertionError):
    """A wrong answer to an exercise; the message says what differs and gives the exercise's hint."""


class KeyMissingError(RuntimeError):
    """The instructor key was asked for but is not part of this edition."""


# ------------------------------------------------------------------------------------ registering
def expected(key: str, hint: str = "", tol: float = REL_TOL):
    """Register ``fn()`` as the expected value of the value exercise ``key``."""
    def deco(fn):
        _EXPECTED[key] = (fn, hint, tol)
        return fn
    return deco


def function(key: str, cases, hint: str = "", apply=None):
    """Register ``fn`` as fcnlib's reference of the function exercise ``key``; ``cases()`` returns the
    list of argument tuples both are called with; ``apply(result, *args)``, if given, turns a result
    (a module, say) into what is compared (its output on a test input)."""
    def deco(fn):
        _FUNCTIONS[key] = (fn, cases, hint, apply)
        return fn
    return deco


def register(key: str):
    """Register ``fn`` as the instructor key's solution of exercise ``key`` (used in the key's files)."""
    def deco(fn):
        _KEY[key] = fn
        return fn
    return deco


def key_dir() -> Path | None:
    """Where the instructor key's files are: ``$FCN_KEY``, else fcnlib/exercise_key if present."""
    if os.environ.get("FCN_KEY"):
        return Path(os.environ["FCN_KEY"])
    here = Path(__file__).parent / "exercise_key"
    return here if here.is_dir() else None


def load(stem: str, key: bool = False) -> None:
    """Import the exercise bank of notebook ``stem`` (e.g. ``"02"``) so its exercises are registered;
    with ``key=True`` (or ``FCN_KEY`` set) also the instructor key's solutions."""
    importlib.import_module(f"fcnlib.exercise_bank.ex{stem}")
    if not (key or os.environ.get("FCN_KEY")):
        return
    folder = key_dir()
    path = folder / f"ex{stem}.py" if folder else None
    if path is None or not path.exists():
        raise KeyMissingError(f"the instructor key for notebook {stem} is not part of this edition "
                              f"({path or 'no fcnlib/exercise_key/ and FCN_KEY is not set'}): set FCN_KEY to "
                              "the key's folder (written by `python -m fcnlib.edition`), or leave the "
                              "exercises to the learner (solutions=False)")
    name = f"fcnlib_exercise_key_ex{stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


def key_answer(key: str):
    """The instructor key's answer to value exercise ``key`` (its function, for a function exercise);
    raises :class:`KeyMissingError` unless the key was loaded."""
    if key not in _KEY:
        raise KeyMissingError(f"exercise {key!r}: the instructor key is not loaded (exercises.load(stem, "
                              "key=True), or FCN_KEY) or not part of this edition")
    return _KEY[key] if key in _FUNCTIONS else _KEY[key]()


# ------------------------------------------------------------------------------------ comparing
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
            return math.isclose(float(a), float(b), rel_tol=tol, abs_tol=tol * 1e-3)
        except (TypeError, ValueError):
            return False
    return a == b


def _round_sig(x: float, sig: int) -> float:
    return round(x, sig - 1 - math.floor(math.log10(abs(x))))


def near_miss(answer, want) -> str:
    """Why a wrong number is close to the expected one ("" if it is not): a rounding slip, a percentage
    given for a fraction (or the reverse), or intermediate values rounded too early."""
    try:
        a, w = float(answer), float(want)
    except (TypeError, ValueError):
        return ""
    if w == 0 or not math.isfinite(a):
        return ""
    if math.isclose(a, 100 * w, rel_tol=REL_TOL) or math.isclose(100 * a, w, rel_tol=REL_TOL):
        return "It looks like a percentage where a fraction is wanted (or the reverse): the method is right."
    for sig in range(1, 4):
        if math.isclose(a, _round_sig(w, sig), rel_tol=1e-9):
            return (f"Close: that is the right value rounded to {sig} significant digit{'s' * (sig > 1)} — a "
                    f"rounding slip, not a wrong method. Give four significant digits (answers within "
                    f"{REL_TOL:.1%} count).")
    if abs(a - w) <= 0.01 * abs(w):
        return (f"Close (within 1%, not within {REL_TOL:.1%}): the method looks right; keep more digits in "
                "the intermediate values.")
    return ""


def _first_difference(got: torch.Tensor, want: torch.Tensor) -> str:
    diff = (got - want).abs()
    idx = tuple(int(i) for i in torch.nonzero(diff > 1e-6 * (1 + want.abs())).__getitem__(0))
    return (f"first difference at index {idx}: yours {got[idx].item():.6g}, fcnlib's {want[idx].item():.6g}; "
            f"largest difference {diff.max().item():.3g}")


def compare(got, want, atol: float = 1e-5) -> str:
    """"" if ``got`` equals ``want`` (tensors to ``atol`` relative to their scale), else what differs —
    type, shape, the first differing index and the largest difference (for tensors)."""
    if isinstance(want, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"returned {type(got).__name__}, expected a tensor of shape {tuple(want.shape)}"
        if got.shape != want.shape:
            return f"shape {tuple(got.shape)}, expected {tuple(want.shape)}"
        g, w = got.detach().double().cpu(), want.detach().double().cpu()
        if torch.equal(g, w):
            return ""
        if torch.allclose(g, w, atol=atol * (1 + w.abs().max().item()), rtol=0):
            return ""
        return _first_difference(g, w)
    if isinstance(want, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(want):
            return f"returned {got!r}, expected a sequence of {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            msg = compare(g, w, atol)
            if msg:
                return f"item {i}: {msg}"
        return ""
    if isinstance(want, float) or isinstance(got, float):
        return "" if _equal(got, want, REL_TOL) else f"returned {got!r}, expected {want!r}"
    return "" if got == want else f"returned {got!r}, expected {want!r}"


def _describe(args) -> str:
    parts = [f"tensor{tuple(a.shape)}" if isinstance(a, torch.Tensor) else
             type(a).__name__ if isinstance(a, torch.nn.Module) else repr(a) for a in args]
    return "(" + ", ".join(parts) + ")"


# ------------------------------------------------------------------------------------ checking
def grade(key: str, answer) -> str:
    """"correct", "not attempted" or "answered from the key" for a value exercise; raises
    :class:`ExerciseError` (what differs, and the hint) for a wrong answer."""
    if key not in _EXPECTED:
        raise KeyError(f"no exercise {key!r}: known ones are {sorted(_EXPECTED)}")
    fn, hint, tol = _EXPECTED[key]
    how = "correct"
    if answer is None:
        if key not in _KEY:
            return "not attempted"
        answer, how = _KEY[key](), "answered from the key"
    want = fn()
    if not _equal(answer, want, tol):
        slip = near_miss(answer, want)
        raise ExerciseError(f"Exercise {key}: {answer!r} is not right. " + (slip or f"Hint: {hint}"))
    return how


def check(key: str, answer) -> None:
    """Check ``answer`` to the value exercise ``key`` and say so (prints one line; raises if wrong)."""
    how = grade(key, answer)
    print({"correct": f"✅ Exercise {key}: correct.",
           "answered from the key": f"🔑 Exercise {key}: answered from the instructor key (correct).",
           "not attempted": f"✏️  Exercise {key}: not attempted yet — replace `answer = None` with your answer."}[how])


def grade_function(key: str, fn) -> str:
    """Run ``fn`` on the exercise's inputs beside fcnlib's reference: "correct", "not attempted" (it
    raises NotImplementedError) or "answered from the key"; raises :class:`ExerciseError` saying on
    which input it differs and where."""
    if key not in _FUNCTIONS:
        raise KeyError(f"no function exercise {key!r}: known ones are {sorted(_FUNCTIONS)}")
    reference, cases, hint, apply = _FUNCTIONS[key]
    how = "correct"
    for n, args in enumerate(cases()):
        try:
            got = fn(*args)
        except NotImplementedError:
            if key not in _KEY:
                return "not attempted"
            fn, how = _KEY[key], "answered from the key"
            got = fn(*args)
        except Exception as e:  # the learner's code failed: say where, keep their traceback below
            raise ExerciseError(f"Exercise {key}: your function raised {type(e).__name__} on input {n + 1}, "
                                f"arguments {_describe(args)}: {str(e).rstrip('.')}. Hint: {hint}") from e
        want = reference(*args)
        if apply is not None:
            got, want = apply(got, *args), apply(want, *args)
        msg = compare(got, want)
        if msg:
            raise ExerciseError(f"Exercise {key}: on input {n + 1}, arguments {_describe(args)}: {msg}. Hint: {hint}")
    return how


def check_function(key: str, fn) -> None:
    """Check the learner's function ``fn`` for exercise ``key`` and say so (one line; raises if wrong)."""
    how = grade_function(key, fn)
    n = len(_FUNCTIONS[key][1]())
    print({"correct": f"✅ Exercise {key}: your function agrees with fcnlib's on all {n} inputs.",
           "answered from the key": f"🔑 Exercise {key}: the instructor key's function agrees with fcnlib's "
                                    f"on all {n} inputs.",
           "not attempted": f"✏️  Exercise {key}: not attempted yet — replace `raise NotImplementedError` "
                            "with your code."}[how])
