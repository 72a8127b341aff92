"""The pipeline: a suite becomes a plan of typed jobs, an executor runs them into the results
store, one pure module scores what is stored, and a run ties the stages together.

Lowest first (each imports only the ones before it and the components): :mod:`.store` (the
SQLite results store) < :mod:`.score` (arrays -> metric rows) < :mod:`.suite` and :mod:`.plan`
(what to compute, as content-keyed jobs) < :mod:`.execute` (who computes it: local or Ray) <
:mod:`.run` and :mod:`.recompute` (a run, the in-memory ``evaluate``, the recomputation audit).
The components these stages use (data, models, metrics, detectors, attacks, checks) sit beside
this folder; the products built on a run (report, zoo, leaderboard, train) above it.

The package imports nothing, so importing one stage stays as light as that stage.
"""
