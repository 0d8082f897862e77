"""Copies of the watch-time scene with the quantile levels a test needs, whatever the shipped one asks for."""

from __future__ import annotations

import shutil
from pathlib import Path

from pitahaya.client_runtime import Scene

WATCH_TIME = Path(__file__).parents[2] / "scenes" / "watch_time"


def scene_with_quantiles(folder: Path, levels: tuple[float, ...]) -> Path:
    """``folder``: the watch-time scene with ``[scene] quantiles = levels`` (none when empty; then
    without the ``[policy]`` knobs that name a level, which no point-only model can follow)."""
    shutil.copytree(WATCH_TIME, folder)
    toml = folder / "scene.toml"
    named = ("quantiles",) if levels else ("quantiles", "preload_quantile", "buffer_quantile")
    lines = [line for line in toml.read_text().splitlines() if not line.startswith(named)]
    if levels:
        lines.insert(lines.index("[scene]") + 1, f"quantiles = {list(levels)}")
    toml.write_text("\n".join(lines) + "\n")
    assert Scene.load(folder).quantiles == levels  # the edit took (fails loudly if scene.toml's layout moves)
    return folder
