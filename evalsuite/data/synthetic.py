"""The demo's synthetic shapes, generated on the fly (deterministic, no files needed)."""

from __future__ import annotations

from dataclasses import dataclass

from ..demo.shapes import COLOURS, HELD_OUT, SHAPES, DrawItem
from ..errors import ConfigError
from .base import DataSource, Samples, SourceContext

SPLITS = ("all", "held_out", "seen")


@dataclass(frozen=True)
class SyntheticShapesArgs:
    per_class: int
    seed: int = 0  # the demo model trains on seeds >= 1_000_000; evaluation seeds stay below
    split: str = "all"  # which colour-shape pairs get images: all, held_out (never trained on) or seen


class SyntheticShapesSource(DataSource):
    """Label keys are ``"<colour> <shape>"`` or a bare ``"<shape>"`` (then colours cycle over samples)."""

    Args = SyntheticShapesArgs

    def __init__(self, spec, source) -> None:
        super().__init__(spec, source)
        if self.args.split not in SPLITS:
            raise ConfigError(f"{spec.file}: source.args.split must be one of {SPLITS}, got {self.args.split!r}")
        if not 0 <= self.args.seed < 1_000_000:
            raise ConfigError(f"{spec.file}: source.args.seed must lie in [0, 1000000) (training uses the rest)")

    def _keep(self, colour: str, shape: str) -> bool:
        held = (colour, shape) in HELD_OUT
        return self.args.split == "all" or (held if self.args.split == "held_out" else not held)

    def samples(self, ctx: SourceContext):
        items, labels = [], []
        for label, key in enumerate(ctx.label_keys):
            words = key.split()
            if len(words) == 2 and words[0] in COLOURS and words[1] in SHAPES:
                pairs = [(words[0], words[1])]
            elif len(words) == 1 and words[0] in SHAPES:
                pairs = [(c, words[0]) for c in COLOURS]
            else:
                raise ConfigError(f"{self.spec.file}: class key {key!r} is not '<colour> <shape>' or '<shape>'")
            pairs = [p for p in pairs if self._keep(*p)]
            for k in range(self.args.per_class if pairs else 0):
                colour, shape = pairs[k % len(pairs)]
                items.append((colour, shape, self.args.seed * 10_000 + label * 1_000 + k))
                labels.append(label)
        names = [f"{c} {s} #{seed}" for c, s, seed in items]
        return Samples(items, labels, DrawItem(), names)


@dataclass(frozen=True)
class SyntheticCaptionsArgs:
    captions: list[str]  # templates with {c} -> '<colour> <shape>'; every image gets each of them
    per_pair: int = 1
    seed: int = 0


class SyntheticCaptionsSource(DataSource):
    """The demo's retrieval set: images of every colour-shape pair, each with its captions."""

    Args = SyntheticCaptionsArgs

    def __init__(self, spec, source) -> None:
        super().__init__(spec, source)
        if not self.args.captions or any(t.count("{c}") != 1 for t in self.args.captions):
            raise ConfigError(f"{spec.file}: source.args.captions must be templates with exactly one {{c}}")

    def samples(self, ctx: SourceContext):
        from .captions import CaptionedSamples

        items, captions = [], []
        for p, (colour, shape) in enumerate((c, s) for c in COLOURS for s in SHAPES):
            for k in range(self.args.per_pair):
                items.append((colour, shape, self.args.seed * 10_000 + p * 100 + k))
                captions.append([t.replace("{c}", f"{colour} {shape}") for t in self.args.captions])
        names = [f"{c} {s} #{seed}" for c, s, seed in items]
        return CaptionedSamples(items, list(range(len(items))), DrawItem(), names, captions)
