"""What a quality gate checks and how it steps: `GateSpec`, its `Margins` and named presets.

A gate rolls a release out in steps (e.g. 1 % -> 10 % -> 50 % -> 100 %). It advances when the
new version's on-device figures are no worse than those of the version(s) the other devices
run, over a minimum sample at each step; it pauses (or rolls back) as soon as they are
worse by more than a margin with confidence (`pitahaya.registry.gate.evidence`).

A spec is sent as JSON with a release, optionally naming a preset whose values the other
fields override::

    {"preset": "standard", "on_fail": "rollback", "margins": {"mae_relative": 0.1}}
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

OnFail = Literal["pause", "rollback"]
PresetName = Literal["standard", "fast", "cautious"]


class Margins(BaseModel):
    """How much worse than the baseline the new version may be before the gate stops it.

    Attributes:
        fallback_rate: Extra share of decisions answered by a fallback (absolute, 0.02 = 2 points).
        timeout_rate: Extra share of decisions that timed out (absolute).
        latency_p99_ratio: The new version's p99 decision latency may be this multiple of the baseline's.
        mae_relative: Extra online mean absolute error, relative to the baseline's (0.15 = 15 %).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    fallback_rate: float = Field(default=0.02, ge=0.0, le=1.0)
    timeout_rate: float = Field(default=0.01, ge=0.0, le=1.0)
    latency_p99_ratio: float = Field(default=1.5, ge=1.0, le=100.0)
    mae_relative: float = Field(default=0.15, ge=0.0, le=10.0)


class GateSpec(BaseModel):
    """A staged rollout driven by on-device quality.

    Attributes:
        preset: Named defaults (`PRESETS`); explicit fields override them.
        steps: Rollout percents in increasing order; the release starts at the first and the
            gate completes once the last has passed.
        min_inferences: Decisions the new version must make at each step (and the baseline in
            all) before the gate may advance.
        min_outcomes: Joined outcomes each arm needs before the error is compared.
        min_step_seconds: Shortest time at a step, however fast the sample arrives (diurnal
            effects, slow pollers).
        alpha: Chance of stopping a release that is in truth no worse, over its whole rollout.
        on_fail: ``pause`` (devices return to what they ran; resume by hand) or ``rollback``
            (the release is undone: the rollout underneath becomes the live one).
        margins: How much worse counts as worse.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: PresetName | None = None
    steps: list[float] = Field(default=[1.0, 10.0, 50.0, 100.0], min_length=1, max_length=20)
    min_inferences: int = Field(default=2000, ge=30, le=10**9)
    min_outcomes: int = Field(default=500, ge=30, le=10**9)
    min_step_seconds: float = Field(default=900.0, ge=0.0, le=30 * 86400)
    alpha: float = Field(default=0.05, gt=0.0, le=0.2)
    on_fail: OnFail = "pause"
    margins: Margins = Margins()

    @model_validator(mode="before")
    @classmethod
    def _preset_under_explicit(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("preset"), str):
            preset = PRESETS.get(data["preset"])
            if preset is None or not isinstance(data.get("margins") or {}, dict):
                return data  # the field checks name what is wrong
            margins = {**preset.get("margins", {}), **(data.get("margins") or {})}
            return {**preset, **data, "margins": margins}
        return data

    @model_validator(mode="after")
    def _steps_increase(self) -> GateSpec:
        if any(not 0.0 < step <= 100.0 for step in self.steps):
            raise ValueError("every step must be a percent in (0, 100]")
        if any(later <= earlier for earlier, later in zip(self.steps, self.steps[1:], strict=False)):
            raise ValueError("steps must increase")
        return self


#: Named gates. ``standard`` suits a fleet of thousands; ``fast`` a small fleet or a test;
#: ``cautious`` a scene whose mistakes are expensive.
PRESETS: dict[str, dict[str, Any]] = {
    "standard": {"steps": [1.0, 10.0, 50.0, 100.0], "min_inferences": 2000, "min_outcomes": 500},
    "fast": {
        "steps": [5.0, 25.0, 100.0],
        "min_inferences": 300,
        "min_outcomes": 100,
        "min_step_seconds": 0.0,
    },
    "cautious": {
        "steps": [1.0, 5.0, 20.0, 50.0, 100.0],
        "min_inferences": 5000,
        "min_outcomes": 1000,
        "min_step_seconds": 3600.0,
        "alpha": 0.01,
        "on_fail": "rollback",
        "margins": {"fallback_rate": 0.01, "timeout_rate": 0.005, "latency_p99_ratio": 1.25, "mae_relative": 0.1},
    },
}
