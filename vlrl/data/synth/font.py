"""A 3x5 bitmap font for digits and operators, so text-rendered problems stay legible at 32 px."""

from __future__ import annotations

from PIL import Image, ImageDraw

GLYPHS: dict[str, tuple[str, ...]] = {
    "0": ("###", "#.#", "#.#", "#.#", "###"),
    "1": (".#.", "##.", ".#.", ".#.", "###"),
    "2": ("###", "..#", "###", "#..", "###"),
    "3": ("###", "..#", "###", "..#", "###"),
    "4": ("#.#", "#.#", "###", "..#", "..#"),
    "5": ("###", "#..", "###", "..#", "###"),
    "6": ("###", "#..", "###", "#.#", "###"),
    "7": ("###", "..#", ".#.", ".#.", ".#."),
    "8": ("###", "#.#", "###", "#.#", "###"),
    "9": ("###", "#.#", "###", "..#", "###"),
    "+": ("...", ".#.", "###", ".#.", "..."),
    "-": ("...", "...", "###", "...", "..."),
    "*": ("...", "#.#", ".#.", "#.#", "..."),
    "=": ("...", "###", "...", "###", "..."),
    "?": ("###", "..#", ".##", "...", ".#."),
    "(": (".#.", "#..", "#..", "#..", ".#."),
    ")": (".#.", "..#", "..#", "..#", ".#."),
    " ": ("...", "...", "...", "...", "..."),
}


def _layout(text: str, size: int) -> tuple[int, list[str]]:
    """Largest integer scale at which ``text`` fits in a size x size square, and its lines."""
    for scale in range(8, 0, -1):
        per_line = max(1, (size - scale) // (4 * scale))
        lines = [text[i : i + per_line] for i in range(0, len(text), per_line)]
        if len(lines) * 6 * scale + scale <= size:
            return scale, lines
    raise ValueError(f"text '{text}' does not fit in a {size} px image")


def render_text(text: str, size: int = 32, fg: tuple = (0, 0, 0), bg: tuple = (255, 255, 255)) -> Image.Image:
    """Render ``text`` (characters of GLYPHS only) centred in a size x size RGB image."""
    unknown = sorted(set(text) - set(GLYPHS))
    if unknown:
        raise ValueError(f"render_text: no glyph for {unknown}")
    scale, lines = _layout(text, size)
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    top = (size - (len(lines) * 6 * scale - scale)) // 2
    for li, line in enumerate(lines):
        left = (size - (len(line) * 4 * scale - scale)) // 2
        for ci, ch in enumerate(line):
            for y, row in enumerate(GLYPHS[ch]):
                for x, px in enumerate(row):
                    if px == "#":
                        x0, y0 = left + (ci * 4 + x) * scale, top + (li * 6 + y) * scale
                        draw.rectangle([x0, y0, x0 + scale - 1, y0 + scale - 1], fill=fg)
    return img
