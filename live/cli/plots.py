"""The `netbend features --plot` figure: the waveform on top, each feature below it on the
same time axis, so a VJ can see which feature follows which part of the music."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_features(table, samples: np.ndarray, sample_rate: int, path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    names = list(table.names)
    fig, axes = plt.subplots(len(names) + 1, 1, figsize=(11, 1.1 * (len(names) + 1)), sharex=True)
    t = np.arange(len(samples)) / sample_rate
    step = max(1, len(samples) // 20000)  # plot at most ~20k points of waveform
    axes[0].plot(t[::step], samples[::step], lw=0.4, color="0.2")
    axes[0].set_ylabel("wave", rotation=0, ha="right", va="center", fontsize=8)
    axes[0].set_title(title, fontsize=10)
    for ax, name in zip(axes[1:], names):
        ax.plot(table.times, table.column(name), lw=0.8)
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path
