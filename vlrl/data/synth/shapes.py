"""Synthetic visual reasoning: scenes of simple shapes on a grid, with counting questions.

Difficulty levels (more objects and harder questions as the level rises):
    1  1-3 objects, count all
    2  2-5 objects, count by colour or by shape
    3  3-6 objects, count by colour and shape
    4  4-8 objects, difference of two counts, or shapes left of / above a unique reference shape
    5  5-9 objects, sum of two counts (two-step arithmetic over counts)
Every answer is computed from the scene specification, which is kept in ``meta["scene"]`` together with a
caption (``meta["caption"]``) for alignment training.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from PIL import Image, ImageDraw

from vlrl.types import Sample

COLORS = {"red": (220, 40, 40), "green": (30, 160, 60), "blue": (40, 80, 230), "yellow": (225, 190, 20)}
SHAPES = ("circle", "square", "triangle")
LEVEL_OBJECTS = {1: (1, 3), 2: (2, 5), 3: (3, 6), 4: (4, 8), 5: (5, 9)}
ROWS = ("top", "middle", "bottom")
COLS = ("left", "center", "right")


@dataclass(frozen=True)
class Obj:
    row: int
    col: int
    color: str
    shape: str

    def name(self) -> str:
        return f"{self.color} {self.shape}"


def make_scene(rng: random.Random, level: int, grid: int = 3) -> list[Obj]:
    lo, hi = LEVEL_OBJECTS[level]
    n = rng.randint(lo, min(hi, grid * grid))
    cells = rng.sample(range(grid * grid), n)
    return [Obj(c // grid, c % grid, rng.choice(list(COLORS)), rng.choice(SHAPES)) for c in sorted(cells)]


def render_scene(scene: list[Obj], size: int = 32, grid: int = 3) -> Image.Image:
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    cell = size / grid
    pad = max(1.0, cell * 0.15)
    for o in scene:
        x0, y0 = o.col * cell + pad, o.row * cell + pad
        x1, y1 = (o.col + 1) * cell - pad - 1, (o.row + 1) * cell - pad - 1
        fill = COLORS[o.color]
        if o.shape == "circle":
            draw.ellipse([x0, y0, x1, y1], fill=fill)
        elif o.shape == "square":
            draw.rectangle([x0, y0, x1, y1], fill=fill)
        else:
            draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
    return img


def position_name(o: Obj, grid: int) -> str:
    if grid == 3:
        return f"{ROWS[o.row]} {COLS[o.col]}"
    return f"row {o.row + 1} column {o.col + 1}"


def caption(scene: list[Obj], grid: int = 3) -> str:
    if not scene:
        return "an empty picture."
    return " ".join(f"a {o.name()} at {position_name(o, grid)}." for o in scene)


def _count(scene: list[Obj], color: str | None = None, shape: str | None = None) -> int:
    return sum((color is None or o.color == color) and (shape is None or o.shape == shape) for o in scene)


def _plural(shape: str) -> str:
    return shape + "s"


def ask(rng: random.Random, scene: list[Obj], level: int) -> tuple[str, int, str, dict]:
    """(question, answer, question type, question parameters) for a scene at a difficulty level."""
    color, shape = rng.choice(list(COLORS)), rng.choice(SHAPES)
    if level == 1:
        return "How many shapes are there?", len(scene), "count", {}
    if level == 2:
        if rng.random() < 0.5:
            return f"How many {color} shapes are there?", _count(scene, color=color), "count_color", {"color": color}
        return f"How many {_plural(shape)} are there?", _count(scene, shape=shape), "count_shape", {"shape": shape}
    if level == 3:
        return (f"How many {color} {_plural(shape)} are there?", _count(scene, color, shape), "count_color_shape",
                {"color": color, "shape": shape})
    if level == 4:
        unique = [o for o in scene if _count(scene, o.color, o.shape) == 1]
        if unique and rng.random() < 0.5:
            ref = rng.choice(unique)
            params = {"color": ref.color, "shape": ref.shape}
            if rng.random() < 0.5:
                return (f"How many shapes are left of the {ref.name()}?", sum(o.col < ref.col for o in scene),
                        "left_of", params)
            return (f"How many shapes are above the {ref.name()}?", sum(o.row < ref.row for o in scene),
                    "above", params)
        a, b = rng.sample(SHAPES, 2)
        diff = abs(_count(scene, shape=a) - _count(scene, shape=b))
        return (f"What is the difference between the number of {_plural(a)} and the number of {_plural(b)}?",
                diff, "difference", {"a": a, "b": b})
    total = _count(scene, color=color) + _count(scene, shape=shape)
    return (f"What is the number of {color} shapes plus the number of {_plural(shape)}?", total, "sum_counts",
            {"color": color, "shape": shape})


def generate_shapes(n: int, seed: int = 0, levels: tuple[int, ...] = (1, 2, 3, 4, 5), image_size: int = 48,
                    grid: int = 3) -> list[Sample]:
    """``n`` shape-scene samples, deterministic for a given seed; levels cycle uniformly."""
    rng = random.Random(f"shapes-{seed}")
    out = []
    for i in range(n):
        level = levels[i % len(levels)]
        scene = make_scene(rng, level, grid)
        question, answer, qtype, params = ask(rng, scene, level)
        out.append(Sample(
            id=f"shapes-{seed}-{i}", question=question, images=[render_scene(scene, image_size, grid)],
            answer=str(answer), response=f"Answer: {answer}", domain="counting", difficulty=level,
            meta={"task": "shapes", "qtype": qtype, "params": params, "grid": grid, "scene": [asdict(o) for o in scene],
                  "caption": caption(scene, grid)},
        ))
    return out


def count_expression(rng: random.Random, level: int, n: int) -> tuple[str, int]:
    """(expression in n, its value at n) for a level, never negative:
    1 n + a, 2 n + a - b, 3 n * a + b, 4 (n + a) * b, 5 n * a - b * c."""
    r = rng.randint
    if level == 1:
        a = r(1, 9)
        return f"n + {a}", n + a
    if level == 2:
        a = r(2, 9)
        b = r(1, n + a)
        return f"n + {a} - {b}", n + a - b
    if level == 3:
        a, b = r(2, 9), r(1, 9)
        return f"n * {a} + {b}", n * a + b
    if level == 4:
        a, b = r(1, 9), r(2, 5)
        return f"(n + {a}) * {b}", (n + a) * b
    a = r(2, 9)
    b = r(1, min(5, n * a))  # n * a >= 2, so b * c <= n * a with c <= n * a // b
    c = r(1, min(5, n * a // b))
    return f"n * {a} - {b} * {c}", n * a - b * c


def generate_shape_math(n: int, seed: int = 0, levels: tuple[int, ...] = (1, 2, 3, 4, 5), image_size: int = 48,
                        grid: int = 3) -> list[Sample]:
    """``n`` problems that join perception and arithmetic: count the shapes of a scene (1-6 of them), then
    evaluate an expression in that count (``count_expression``; the level sets the expression). A direct
    answer has to do both in one step; a chain of thought counts, substitutes and computes."""
    rng = random.Random(f"shape_math-{seed}")
    out = []
    for i in range(n):
        level = levels[i % len(levels)]
        scene = make_scene(rng, rng.choice((1, 2, 3)), grid)
        expr, answer = count_expression(rng, level, len(scene))
        out.append(Sample(
            id=f"shape_math-{seed}-{i}", question=f"Let n be the number of shapes in the picture. What is {expr}?",
            images=[render_scene(scene, image_size, grid)], answer=str(answer), response=f"Answer: {answer}",
            domain="visual_math", difficulty=level,
            meta={"task": "shape_math", "expression": expr, "count": len(scene), "grid": grid,
                  "scene": [asdict(o) for o in scene], "caption": caption(scene, grid)},
        ))
    return out
