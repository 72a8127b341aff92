"""The bottom layer: the types and names every stage of oodbench shares.

Nothing here imports anything else from oodbench (``tests/test_layers.py`` checks it), so any
module of any layer may import from here without closing an import circle. It holds the
pipeline's vocabulary (row kinds, array keys, cost, the default detector, the package version),
the errors several layers raise, the registry of every component family, the field types
and device names every user-written file is validated with, safe file names, a run's provenance,
the reference card a paper's numbers come in, the YAML
error-location helpers of every file oodbench reads, and the narrow protocols through which a
lower layer uses an object that a higher one builds (an attack's traits). It plays the part ``lm_eval/api/`` plays in lm-evaluation-harness; it is called
``core`` rather than ``api`` because oodbench's public API is the package itself
(:mod:`oodbench`: ``load_suite``, ``run_suite``, ``load_model``, ``evaluate``).

The layer order, lowest first: core < data / models / metrics / scores / bounds < detectors <
attacks / checks < pipeline: store < score < suite / plan < execute < run / recompute <
report / zoo / leaderboard / train < cli (README "Layout").

The package itself imports nothing, so importing one of its modules stays as light as that
module.
"""
