"""The three pipelines behind one name each, and bends whose params follow audio mappings.

    pipe = make_pipeline("walk", model, WalkConfig(prompt="3D mesh geometry"))
    driven = MappedBends(bends, mappings)            # mappings[i] drives bends[i] (or None)
    for i, features in enumerate(table):
        pipe.bends = driven.update(features, dt=1 / fps)
        image = pipe.frame(i, total)

Every pipeline answers ``frame(i, total)`` with the next image, (1, 3, H, W) in [0, 1]:
walk computes frame i from scratch; stream and chain feed their previous frame back, and
``resume(image)`` restarts them from a saved frame.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence, Union

from .bends import Bend
from .chain import ChainConfig, ChainPipeline
from .stream import StreamConfig, StreamPipeline
from .walk import WalkConfig, WalkPipeline

Pipeline = Union[StreamPipeline, WalkPipeline, ChainPipeline]
Config = Union[StreamConfig, WalkConfig, ChainConfig]

PIPELINES: dict[str, tuple[type, type]] = {
    "stream": (StreamPipeline, StreamConfig),
    "walk": (WalkPipeline, WalkConfig),
    "chain": (ChainPipeline, ChainConfig),
}


def make_pipeline(kind: str, model, config: Optional[Config] = None, bends: Iterable[Bend] = (),
                  backend: str = "eager") -> Pipeline:
    """A prepared pipeline of ``kind`` (stream | walk | chain) on ``backend`` (eager | compile)."""
    if kind not in PIPELINES:
        raise ValueError(f"unknown pipeline {kind!r}; allowed: {', '.join(PIPELINES)}")
    cls, config_cls = PIPELINES[kind]
    if config is not None and not isinstance(config, config_cls):
        raise TypeError(f"{kind} pipeline takes a {config_cls.__name__}, got {type(config).__name__}")
    pipe = cls(model, config, bends, backend)
    pipe.prepare()
    return pipe


class MappedBends:
    """Bends whose params follow audio features through mappings, with smoothing state.

    ``update(features, dt)`` returns this frame's bends: a mapped bend gets its param from
    its mapping; an unmapped one keeps its own. Nothing is rebuilt: only params change.
    """

    def __init__(self, bends: Sequence[Bend], mappings: Sequence = ()):
        from .mappings import MappingState

        mappings = list(mappings) + [None] * (len(bends) - len(mappings))
        if len(mappings) != len(bends):
            raise ValueError(f"{len(mappings)} mappings for {len(bends)} bends")
        self.bends = list(bends)
        self.mappings = mappings
        self._states = [MappingState(m) if m is not None else None for m in mappings]

    def update(self, features, dt: float) -> list[Bend]:
        out = []
        for bend, mapping, state in zip(self.bends, self.mappings, self._states):
            if state is None:
                out.append(bend)
            else:
                out.append(bend.with_param(state.update(float(features[mapping.feature]), dt)))
        return out
