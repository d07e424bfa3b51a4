"""Prompt schedules: prompts at times, the text embedding interpolated between them.

    schedule = PromptSchedule.parse([[0, "starry night"], [20, "forest with river"], [45, "the sea"]])
    schedule.at(10.0)        # ("starry night", "forest with river", 0.5)

A schedule is data (presets hold it as ``prompts = [[0.0, "a"], [12.5, "b"], …]``, the
render command line as ``--prompts "0:a|12.5:b"``). Times are seconds from the start of the
render. Before the first key the first prompt holds, after the last the last; between two
keys the embedding moves from one to the next. ``interpolation`` is ``"linear"`` (the
authors' np.linspace between two prompts' embeddings, the default) or ``"slerp"`` (the live
path's prompt blend) or ``"step"`` (cuts, no blend).

The paper's two-prompt walk ("starry night" to "forest with river" over the whole video)
is ``PromptSchedule.over(["starry night", "forest with river"], duration)``; their guitar
video used several prompts, and their future work asks for exactly this.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from torch import Tensor

INTERPOLATIONS = ("linear", "slerp", "step")

FORMS = ('a list of [seconds, "prompt"] pairs, e.g. [[0, "starry night"], [20, "forest with river"]], '
         'or text "0:starry night|20:forest with river"')


@dataclass(frozen=True)
class PromptSchedule:
    """Keys (seconds, prompt), strictly increasing in time; at least one."""

    keys: tuple[tuple[float, str], ...]
    interpolation: str = "linear"

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError(f"a prompt schedule needs at least one prompt; write {FORMS}")
        keys = []
        for key in self.keys:
            if isinstance(key, (str, bytes)) or not hasattr(key, "__len__") or len(key) != 2:
                raise ValueError(f"bad prompt schedule key {key!r}; write {FORMS}")
            t, prompt = key
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
                raise ValueError(f"bad prompt schedule time {t!r}: times are seconds >= 0")
            if not isinstance(prompt, str):
                raise ValueError(f"bad prompt at {t} s: {prompt!r} is not text")
            keys.append((float(t), prompt))
        times = [t for t, _ in keys]
        if any(b <= a for a, b in zip(times, times[1:])):
            raise ValueError(f"prompt schedule times must increase, got {times}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown prompt interpolation {self.interpolation!r}; allowed: {', '.join(INTERPOLATIONS)}")
        object.__setattr__(self, "keys", tuple(keys))

    @classmethod
    def parse(cls, spec: Any, interpolation: str = "linear") -> "PromptSchedule":
        """From a PromptSchedule, a list of [seconds, prompt] pairs (or {time, prompt} tables),
        or text ``"0:a|12.5:b"``."""
        if isinstance(spec, PromptSchedule):
            return spec
        if isinstance(spec, str):
            keys = []
            for part in spec.split("|"):
                t, sep, prompt = part.partition(":")
                try:
                    if not sep:
                        raise ValueError
                    keys.append((float(t), prompt.strip()))
                except ValueError:
                    raise ValueError(f"bad prompt schedule part {part!r}; write {FORMS}") from None
            return cls(tuple(keys), interpolation)
        if isinstance(spec, Sequence):
            keys = []
            for key in spec:
                if isinstance(key, dict):
                    if set(key) != {"time", "prompt"}:
                        raise ValueError(f"bad prompt schedule key {key!r}; a table needs exactly time and prompt")
                    key = (key["time"], key["prompt"])
                keys.append(key)
            return cls(tuple(keys), interpolation)
        raise ValueError(f"bad prompt schedule {spec!r}; write {FORMS}")

    @classmethod
    def over(cls, prompts: Sequence[str], duration: float, interpolation: str = "linear") -> "PromptSchedule":
        """``prompts`` spread evenly from 0 to ``duration`` seconds (the paper's two-prompt walk)."""
        if len(prompts) == 1 or duration <= 0:
            return cls(((0.0, prompts[0]),), interpolation)
        step = duration / (len(prompts) - 1)
        return cls(tuple((i * step, p) for i, p in enumerate(prompts)), interpolation)

    @property
    def prompts(self) -> list[str]:
        """The distinct prompts, in order of first appearance (what to encode once)."""
        return list(dict.fromkeys(p for _, p in self.keys))

    def at(self, t: float) -> tuple[str, str, float]:
        """(prompt from, prompt to, weight 0..1 of "to") at ``t`` seconds."""
        keys = self.keys
        if t <= keys[0][0]:
            return keys[0][1], keys[0][1], 0.0
        for (t0, p0), (t1, p1) in zip(keys, keys[1:]):
            if t < t1:
                w = (t - t0) / (t1 - t0)
                return (p0, p0, 0.0) if self.interpolation == "step" else (p0, p1, w)
        return keys[-1][1], keys[-1][1], 0.0

    def embedding(self, t: float, embeddings: dict[str, Tensor]) -> Tensor:
        """The text embedding at ``t`` from each prompt's embedding (``encode_all``)."""
        a, b, w = self.at(t)
        if w == 0.0 or a == b:
            return embeddings[a]
        if self.interpolation == "slerp":
            from .sampling import slerp

            return slerp(embeddings[a], embeddings[b], w)
        return embeddings[a].lerp(embeddings[b], w)

    def encode_all(self, encode: Callable[[list[str]], Tensor]) -> dict[str, Tensor]:
        """Each distinct prompt encoded once: {prompt: (1, tokens, dim)}."""
        return {p: encode([p]) for p in self.prompts}

    def to_list(self) -> list[list]:
        """The preset form: [[seconds, prompt], …]."""
        return [[t, p] for t, p in self.keys]

    def __str__(self) -> str:
        return "|".join(f"{t:g}:{p}" for t, p in self.keys)
