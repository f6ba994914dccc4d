"""Text-only arithmetic and word problems, and their text-rendered twins (Kimi k1.5's text-rendered data).

Levels:
    1  a + b (single digits)
    2  a + b - c, or two-digit a + b
    3  a * b + c
    4  (a + b) * c, or a two-step word problem
    5  a * b - c * d, or a three-step word problem
Expressions use only digits, + - * and parentheses, so they render with the bitmap font; word problems
exist as text only. Answers are non-negative integers computed while the problem is built.
"""

from __future__ import annotations

import random

from vlrl.data.synth.font import render_text
from vlrl.types import Sample

NAMES = ("Ann", "Ben", "Cara", "Dev", "Eli", "Fay")
ITEMS = ("apples", "books", "coins", "stamps", "marbles", "pens")


def expression(rng: random.Random, level: int) -> tuple[str, int]:
    """(expression with spaces, value) for a level; the value is never negative."""
    r = rng.randint
    if level == 1:
        a, b = r(1, 9), r(1, 9)
        return f"{a} + {b}", a + b
    if level == 2:
        if rng.random() < 0.5:
            a, b = r(10, 49), r(10, 49)
            return f"{a} + {b}", a + b
        a, b = r(2, 9), r(1, 9)
        c = r(1, a + b)
        return f"{a} + {b} - {c}", a + b - c
    if level == 3:
        a, b, c = r(2, 9), r(2, 9), r(1, 9)
        return f"{a} * {b} + {c}", a * b + c
    if level == 4:
        a, b, c = r(1, 9), r(1, 9), r(2, 5)
        return f"({a} + {b}) * {c}", (a + b) * c
    a, b, c, d = r(2, 9), r(2, 9), r(1, 5), r(1, 5)
    if a * b < c * d:
        a, b, c, d = c, d, a, b
    return f"{a} * {b} - {c} * {d}", a * b - c * d


def word_problem(rng: random.Random, steps: int) -> tuple[str, int, dict]:
    """A word problem with ``steps`` operations (2 or 3); returns (text, answer, structure) where structure
    is {name, item, start, ops: [[op, operand], ...]} for chain-of-thought generation."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    start, more = rng.randint(2, 9), rng.randint(2, 9)
    given = rng.randint(1, start + more)
    text = f"{name} has {start} {item}. {name} gets {more} more and gives away {given}."
    value, ops = start + more - given, [["+", more], ["-", given]]
    if steps >= 3:
        times = rng.randint(2, 3)
        text += f" Then the number of {item} is multiplied by {times}."
        value *= times
        ops.append(["*", times])
    structure = {"name": name, "item": item, "start": start, "ops": ops}
    return f"{text} How many {item} does {name} have now?", value, structure


def generate_arithmetic(n: int, seed: int = 0, levels: tuple[int, ...] = (1, 2, 3, 4, 5)) -> list[Sample]:
    """``n`` text-only problems; at levels 4 and 5 half are word problems."""
    rng = random.Random(f"arithmetic-{seed}")
    out = []
    for i in range(n):
        level = levels[i % len(levels)]
        if level >= 4 and rng.random() < 0.5:
            question, answer, structure = word_problem(rng, steps=level - 2)
            meta = {"task": "arithmetic", "kind": "word", "word": structure}
        else:
            expr, answer = expression(rng, level)
            question, meta = f"What is {expr}?", {"task": "arithmetic", "kind": "expression", "expression": expr}
        out.append(Sample(id=f"arithmetic-{seed}-{i}", question=question, answer=str(answer),
                          response=f"Answer: {answer}", domain="arithmetic", difficulty=level, meta=meta))
    return out


def generate_text_rendered(n: int, seed: int = 0, levels: tuple[int, ...] = (1, 2, 3, 4, 5),
                           image_size: int = 48) -> list[Sample]:
    """``n`` pairs (2n samples): each expression rendered into an image, and the same problem as text,
    linked by ``pair_id`` so the modality gap can be measured."""
    rng = random.Random(f"text_rendered-{seed}")
    out = []
    for i in range(n):
        level = levels[i % len(levels)]
        expr, answer = expression(rng, level)
        pair = f"rendered-{seed}-{i}"
        common = dict(answer=str(answer), response=f"Answer: {answer}", domain="arithmetic", difficulty=level,
                      pair_id=pair)
        shown = expr.replace(" ", "") + "=?"
        image = render_text(shown, image_size)
        out.append(Sample(id=f"{pair}-image", question="Solve the problem in the image.", images=[image],
                          modality="text_rendered", meta={"task": "text_rendered", "expression": expr,
                                                          "caption": f"the image shows {shown}"}, **common))
        out.append(Sample(id=f"{pair}-text", question=f"What is {expr}?",
                          meta={"task": "text_rendered", "expression": expr}, **common))
    return out
