"""A deterministic synthetic world of coloured shapes, drawn with PIL.

Each image shows one shape of one colour on a noisy background at a random place, size and rotation. Some
colour-shape pairs are held out of the demo model's training, so the demo measures zero-shot generalisation
to unseen combinations of seen words.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 70, 220),
    "yellow": (235, 215, 40),
    "purple": (140, 50, 180),
    "orange": (245, 140, 30),
}
SHAPES = ("circle", "square", "triangle", "cross", "star")
# Never shown to the demo model in training; every colour and every shape is still seen with other partners.
HELD_OUT: frozenset[tuple[str, str]] = frozenset(
    {("red", "triangle"), ("green", "cross"), ("blue", "star"), ("yellow", "circle"), ("purple", "square"),
     ("orange", "triangle")}
)
CANVAS = (80, 64)  # not square: the model's shortest-side resize + centre crop has work to do


def all_pairs() -> list[tuple[str, str]]:
    return [(c, s) for c in COLOURS for s in SHAPES]


def seen_pairs() -> list[tuple[str, str]]:
    return [p for p in all_pairs() if p not in HELD_OUT]


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if shape == "square":
        pts = [(math.cos(angle + math.pi / 4 + k * math.pi / 2), math.sin(angle + math.pi / 4 + k * math.pi / 2))
               for k in range(4)]
    elif shape == "triangle":
        pts = [(math.cos(angle - math.pi / 2 + k * 2 * math.pi / 3),
                math.sin(angle - math.pi / 2 + k * 2 * math.pi / 3))
               for k in range(3)]
    elif shape == "star":
        pts = []
        for k in range(10):
            rad = 1.0 if k % 2 == 0 else 0.45
            a = angle - math.pi / 2 + k * math.pi / 5
            pts.append((rad * math.cos(a), rad * math.sin(a)))
    elif shape == "cross":
        w = 0.33
        base = [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w),
                (-w, -w)]
        ca, sa = math.cos(angle), math.sin(angle)
        pts = [(x * ca - y * sa, x * sa + y * ca) for x, y in base]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return [(cx + r * x, cy + r * y) for x, y in pts]


def draw(colour: str, shape: str, seed: int, canvas: tuple[int, int] = CANVAS) -> Image.Image:
    """One image of ``colour shape``; the same (colour, shape, seed) always gives the same pixels."""
    rng = random.Random(f"{colour}/{shape}/{seed}")
    w, h = canvas
    grey = rng.randint(150, 235)
    img = Image.new("RGB", canvas, (grey, grey, grey))
    d = ImageDraw.Draw(img)
    for _ in range(40):  # background speckle
        x, y = rng.randrange(w), rng.randrange(h)
        g = grey + rng.randint(-40, 15)
        d.rectangle([x, y, x + 1, y + 1], fill=(g, g, g))
    side = min(w, h)
    r = rng.uniform(0.17, 0.3) * side
    # keep the shape inside the centred square the eval transform crops
    cx = w / 2 + rng.uniform(-1, 1) * (side / 2 - r - 2)
    cy = h / 2 + rng.uniform(-1, 1) * (side / 2 - r - 2)
    fill = tuple(max(0, min(255, v + rng.randint(-25, 25))) for v in COLOURS[colour])
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        d.polygon(_polygon(shape, cx, cy, r, rng.uniform(-0.35, 0.35)), fill=fill)
    return img


@dataclass(frozen=True)
class DrawItem:
    """A picklable loader for DataLoader workers: item (colour, shape, seed) -> image."""

    canvas: tuple[int, int] = CANVAS

    def __call__(self, item: tuple[str, str, int]) -> Image.Image:
        colour, shape, seed = item
        return draw(colour, shape, seed, self.canvas)
