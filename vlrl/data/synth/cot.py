"""Chain-of-thought responses for the synthetic tasks, in three styles.

- ``direct``: "Answer: N".
- ``short``: the minimal computation, then the answer.
- ``long``: the k1.5 warm-up pattern (reference §8): **planning** (state the approach), the work,
  **evaluation** (check an intermediate result another way), **reflection** (with probability ``slip``
  a deliberate mistake is made, noticed and corrected), **exploration** (a second method, compared with
  the first), and a final parseable "Answer: N".
The word "answer" appears only on the last line, so the extractor can never pick an intermediate value.
"""

from __future__ import annotations

import ast
import random
from typing import Any

from vlrl.data.synth.shapes import COLS, ROWS
from vlrl.types import Sample

STYLES = ("direct", "short", "long")
_OPS = {ast.Add: ("+", lambda a, b: a + b), ast.Sub: ("-", lambda a, b: a - b), ast.Mult: ("*", lambda a, b: a * b)}


# ----------------------------------------------------------------------------- arithmetic
def expression_steps(expr: str) -> list[tuple[int, str, int, int]]:
    """Post-order evaluation steps [(left, op, right, value)] of an expression of + - * and parentheses."""
    steps: list[tuple[int, str, int, int]] = []

    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.Constant):
            return int(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = ev(node.left), ev(node.right)
            sym, fn = _OPS[type(node.op)]
            steps.append((left, sym, right, fn(left, right)))
            return steps[-1][3]
        raise ValueError(f"unsupported expression '{expr}'")

    ev(ast.parse(expr, mode="eval").body)
    return steps


def _inverse_check(left: int, op: str, right: int, value: int) -> str:
    if op == "+":
        return f"{value} - {right} = {left}, which matches."
    if op == "-":
        return f"{value} + {right} = {left}, which matches."
    return f"{right} * {left} = {value} as well, which matches."


def _explain(a: int, op: str, b: int) -> list[str]:
    """Break a multi-digit step into single-digit facts (column addition, making a ten, splitting tens)."""
    if op == "+" and (a >= 10 or b >= 10):
        ones = a % 10 + b % 10
        carry = ones // 10
        lines = [f"Ones: {a % 10} + {b % 10} = {ones}."] + ([f"Write {ones % 10}, carry 1."] if carry else [])
        return lines + [f"Tens: {a // 10} + {b // 10}{' + 1' if carry else ''} = {a // 10 + b // 10 + carry}."]
    if op == "-" and a >= 10:
        if b >= 10:
            return [f"First {a} - {b // 10 * 10} = {a - b // 10 * 10}, then take away {b % 10}."]
        if b > a % 10:
            down = a - a % 10
            return [f"Make a ten: {a} - {a % 10} = {down}, then {down} - {b - a % 10} = {a - b}."]
        return [f"Ones: {a % 10} - {b} = {a % 10 - b}, the tens stay {a // 10}."]
    if op == "*" and max(a, b) >= 10 and min(a, b) < 10:
        big, small = max(a, b), min(a, b)
        return [f"Split {big} into {big // 10 * 10} + {big % 10}: {big // 10 * 10} * {small} = {big // 10 * 10 * small} "
                f"and {big % 10} * {small} = {big % 10 * small}, together {big * small}."]
    return []


def _work(steps: list[tuple[int, str, int, int]], rng: random.Random, slip: float) -> list[str]:
    """One line per step (multi-digit steps broken into single-digit facts first); maybe one deliberate
    slip that is caught (reflection)."""
    lines = []
    slip_at = rng.randrange(len(steps)) if rng.random() < slip else -1
    for i, (a, op, b, v) in enumerate(steps):
        lines += _explain(a, op, b)
        if i == slip_at:
            wrong = v + rng.choice([-1, 1]) if v > 0 else v + 1
            lines.append(f"{a} {op} {b} = {wrong}.")
            lines.append(f"Wait, let me recheck that: {a} {op} {b} is not {wrong}. {a} {op} {b} = {v}.")
        else:
            lines.append(f"{a} {op} {b} = {v}.")
    return lines


def _plan_expression(steps: list[tuple[int, str, int, int]], expr: str) -> str:
    if "(" in expr:
        return "Plan: work out the part in parentheses first, then the rest."
    if len(steps) > 1 and any(op == "*" for _, op, _, _ in steps):
        return "Plan: do the multiplication before the addition and subtraction."
    return "Plan: work from left to right."


def _explore(steps: list[tuple[int, str, int, int]]) -> str:
    a, op, b, v = steps[-1]
    if op in "+*":
        return f"Another way: swap the order, {b} {op} {a} = {v}. Both ways give {v}."
    return f"Another way: count up from {b} to {a}, that is {v} steps. Both ways give {v}."


def arithmetic_response(expr: str, answer: int, style: str, rng: random.Random, slip: float,
                        preface: list[str] | None = None, then: bool = False) -> str:
    """The chain of thought of ``expr`` after ``preface``; ``then``: the preface already made the plan, so
    the expression's plan line continues it ("Then work from left to right.")."""
    steps = expression_steps(expr)
    if steps[-1][3] != answer:
        raise ValueError(f"expression '{expr}' evaluates to {steps[-1][3]}, not {answer}")
    lines = list(preface or [])
    if style == "short":
        lines += [f"{a} {op} {b} = {v}." for a, op, b, v in steps]
    else:
        plan = _plan_expression(steps, expr)
        lines.append("Then " + plan[len("Plan: "):] if then else plan)
        lines += _work(steps, rng, slip)
        lines.append("Check: " + _inverse_check(*steps[-1]))
        lines.append(_explore(steps))
    return "\n".join(lines + [f"Answer: {answer}"])


def word_response(w: dict, answer: int, style: str, rng: random.Random, slip: float) -> str:
    value, steps = w["start"], []
    for op, x in w["ops"]:
        new = {"+": value + x, "-": value - x, "*": value * x}[op]
        steps.append((value, op, x, new))
        value = new
    if value != answer:
        raise ValueError(f"word problem steps give {value}, not {answer}")
    lines = [] if style == "short" else [f"Plan: start from the {w['start']} {w['item']} {w['name']} has and "
                                         f"apply each change in order."]
    lines += [f"{a} {op} {b} = {v}." for a, op, b, v in steps] if style == "short" else _work(steps, rng, slip)
    if style == "long":
        lines.append("Check: " + _inverse_check(*steps[-1]))
        lines.append(_explore(steps))
    return "\n".join(lines + [f"Answer: {answer}"])


# ----------------------------------------------------------------------------- shapes
def _row_listing(scene: list[dict], grid: int) -> list[str]:
    lines = []
    for r in range(grid):
        objs = [o for o in scene if o["row"] == r]
        name = ROWS[r].capitalize() if grid == 3 else f"Row {r + 1}"
        lines.append(f"{name} row: " + (", ".join(f"{o['color']} {o['shape']}" for o in objs) or "nothing") + ".")
    return lines


def _matches(o: dict, color: str | None = None, shape: str | None = None) -> bool:
    return (color is None or o["color"] == color) and (shape is None or o["shape"] == shape)


def _count_line(scene: list[dict], label: str, color=None, shape=None) -> tuple[str, int]:
    hits = [o for o in scene if _matches(o, color, shape)]
    if not hits:
        return f"{label}: none, so 0.", 0
    tally = ", ".join(str(i + 1) for i in range(len(hits)))
    return f"{label}: counting them, {tally}. That makes {len(hits)}.", len(hits)


def _shape_goal(qtype: str, p: dict) -> tuple[str, list[tuple[str, Any, Any]]]:
    """(what to do, [(label, color, shape) to count])."""
    if qtype == "count":
        return "count all of them", [("All shapes", None, None)]
    if qtype == "count_color":
        return f"count the {p['color']} ones", [(f"{p['color'].capitalize()} shapes", p["color"], None)]
    if qtype == "count_shape":
        return f"count the {p['shape']}s", [(f"{p['shape'].capitalize()}s", None, p["shape"])]
    if qtype == "count_color_shape":
        return (f"count the {p['color']} {p['shape']}s",
                [(f"{p['color'].capitalize()} {p['shape']}s", p["color"], p["shape"])])
    if qtype == "difference":
        return (f"count the {p['a']}s and the {p['b']}s and take the difference",
                [(f"{p['a'].capitalize()}s", None, p["a"]), (f"{p['b'].capitalize()}s", None, p["b"])])
    return (f"count the {p['color']} shapes and the {p['shape']}s and add them",
            [(f"{p['color'].capitalize()} shapes", p["color"], None), (f"{p['shape'].capitalize()}s", None, p["shape"])])


def _combine(qtype: str, counts: list[int]) -> tuple[list[str], int]:
    if qtype == "difference":
        a, b = max(counts), min(counts)
        return [f"The difference is {a} - {b} = {a - b}."], a - b
    if qtype == "sum_counts":
        return [f"The sum is {counts[0]} + {counts[1]} = {counts[0] + counts[1]}."], counts[0] + counts[1]
    return [], counts[0]


def _spatial(scene: list[dict], qtype: str, p: dict, grid: int) -> tuple[list[str], int]:
    ref = next(o for o in scene if _matches(o, p["color"], p["shape"]))
    key, where = ("col", COLS) if qtype == "left_of" else ("row", ROWS)
    pos = ref[key]
    side = "column" if key == "col" else "row"
    name = where[pos] if grid == 3 else str(pos + 1)
    hits = [o for o in scene if o[key] < pos]
    rel = "left of" if qtype == "left_of" else "above"
    lines = [f"The {p['color']} {p['shape']} is in the {name} {side}.",
             f"Shapes {rel} it: " + (", ".join(f"{o['color']} {o['shape']}" for o in hits) or "none") + "."]
    return lines + [f"That makes {len(hits)}."], len(hits)


def shapes_response(s: Sample, style: str, rng: random.Random, slip: float) -> str:
    scene, qtype, p, grid = s.meta["scene"], s.meta["qtype"], s.meta.get("params", {}), s.meta.get("grid", 3)
    listing = _row_listing(scene, grid)
    if qtype in ("left_of", "above"):
        work, value = _spatial(scene, qtype, p, grid)
        goal, check = f"find the {p['color']} {p['shape']} and count the shapes {'left of' if qtype == 'left_of' else 'above'} it", None
    else:
        goal, targets = _shape_goal(qtype, p)
        work, counts = [], []
        for label, color, shape in targets:
            line, c = _count_line(scene, label, color, shape)
            work.append(line)
            counts.append(c)
        extra, value = _combine(qtype, counts)
        work += extra
        check = targets[0]
    if value != int(s.answer):
        raise ValueError(f"sample '{s.id}': chain of thought gives {value}, reference is {s.answer}")
    if style == "short":
        return "\n".join(listing + work + [f"Answer: {value}"])
    lines = [f"Plan: list the shapes row by row, then {goal}."] + listing
    if rng.random() < slip and work:
        lines.append(f"At first glance I get {value + 1}.")
        lines.append("Wait, that was too quick. Let me go through the list again.")
    lines += work
    if check is not None:
        label, color, shape = check
        n = sum(_matches(o, color, shape) for o in scene)
        lines.append(f"Check: going column by column instead, I again find {n} for {label.lower()}.")
        lines.append(f"Another way: of the {len(scene)} shapes, {len(scene) - n} do not fit, and "
                     f"{len(scene)} - {len(scene) - n} = {n}. Both ways agree.")
    else:
        lines.append(f"Check: the {side_word(qtype)} of each listed shape is smaller, so the count {value} holds.")
    return "\n".join(lines + [f"Answer: {value}"])


def shape_math_response(s: Sample, style: str, rng: random.Random, slip: float) -> str:
    """Count the shapes (the row listing and a tally), put the count into the expression, then the
    arithmetic chain of thought of the resulting expression."""
    scene, grid = s.meta["scene"], s.meta.get("grid", 3)
    count_line, n = _count_line(scene, "All shapes")
    expr = s.meta["expression"].replace("n", str(n))
    preface = [] if style == "short" else [f"Plan: count the shapes to find n, then work out {s.meta['expression']}."]
    preface += _row_listing(scene, grid) + [count_line, f"So n = {n} and the problem is {expr}."]
    return arithmetic_response(expr, int(s.answer), style, rng, slip, preface, then=True)


def side_word(qtype: str) -> str:
    return "column" if qtype == "left_of" else "row"


# ----------------------------------------------------------------------------- dispatch
def make_response(s: Sample, style: str, rng: random.Random, slip: float = 0.0) -> str:
    """A response of ``style`` for a synthetic sample, computed from its metadata (and checked against
    its reference answer)."""
    if style not in STYLES:
        raise ValueError(f"response style '{style}' is not one of {STYLES}")
    answer = int(s.answer)
    if style == "direct":
        return f"Answer: {answer}"
    task = s.meta.get("task")
    if task == "shapes":
        return shapes_response(s, style, rng, slip)
    if task == "shape_math":
        return shape_math_response(s, style, rng, slip)
    if task == "arithmetic" and s.meta.get("kind") == "word":
        return word_response(s.meta["word"], answer, style, rng, slip)
    if task in ("arithmetic", "text_rendered"):
        expr = s.meta["expression"]
        preface = None
        if s.modality == "text_rendered":
            preface = [f"Reading the image: {expr.replace(' ', '')}=?", f"So the problem is {expr}."]
        return arithmetic_response(expr, answer, style, rng, slip, preface)
    raise ValueError(f"sample '{s.id}': no chain-of-thought generator for task '{task}'")


def with_responses(samples: list[Sample], style: str, slip: float = 0.0, seed: int = 0) -> list[Sample]:
    """Set ``response`` of every sample to a ``style`` response (in place; returns the list)."""
    rng = random.Random(f"cot-{seed}")
    for s in samples:
        s.response = make_response(s, style, rng, slip)
        s.meta["style"] = style
    return samples
