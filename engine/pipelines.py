"""The three pipelines behind one name each.

    pipe = make_pipeline("walk", model, WalkConfig(prompt="3D mesh geometry"))
    driven = MappedBends(bends, mappings)            # engine.mappings: mappings[i] drives bends[i]
    for i, features in enumerate(table):
        pipe.bends = driven.update(features, dt=1 / fps)
        image = pipe.frame(i, total)

Every pipeline answers ``frame(i, total)`` with the next image, (1, 3, H, W) in [0, 1]:
walk computes frame i from scratch; stream and chain feed their previous frame back, and
``resume(image)`` restarts them from a saved frame.
"""
from __future__ import annotations

from typing import Iterable, Optional, Union

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

