"""Quality gates: staged rollouts that advance, pause or roll back on devices' own figures.

`spec` says what a gate checks and how it steps, `sequential` gives the always-valid
intervals that let it look at its data every minute, `evidence` judges one rollout from the
telemetry totals; `pitahaya.registry.services.gates` stores gates and applies their steps.
"""
