"""Trust checks: structured flags for the ways a benchmark row can mislead (gradient masking).

Each check (one file here, registered in the ``checks`` family under its code; ``oodbench list
checks``) runs beside a suite's jobs on a few points, is executed like a shard (plain data in,
plain data out: :func:`run_checks`), and the driver stores its verdicts — :class:`Flag`\\ s —
in the results store's ``flags`` table, keyed by the job they concern and the code. Checks never
change a metric or a job key; a suite's ``checks:`` field sets how many points they use
(:class:`ChecksSpec`). The codes:

- ``randomised-forward``, ``softmax-output``, ``dynamic-forward`` (the model, on its clean job);
- ``too-few-classes``, ``zero-gradient``, ``black-box-beats-white-box`` (each attack job).
"""

from __future__ import annotations

from oodbench.checks.base import AttackInputs, BlackBoxInputs, Check, Flag, ModelInputs
from oodbench.checks.spec import CHECKS_VERSION, BlackBoxCheckSpec, ChecksSpec

__all__ = ["AttackInputs", "BlackBoxCheckSpec", "BlackBoxInputs", "CHECKS_VERSION", "Check",
           "ChecksSpec", "Flag", "ModelInputs", "codes_for"]


def codes_for(attack, spec, settings: ChecksSpec) -> list[str]:
    """The registered checks that run for a job, in registry order: the model checks for a clean
    job (``attack`` None), else the attack checks that apply to ``attack``; none when
    ``settings.enabled`` is off, and never one in ``settings.skip``."""
    from oodbench.core.registry import checks

    if not settings.enabled:
        return []
    scope = "model" if attack is None else "attack"
    out = []
    for entry in checks:
        check = entry.load()
        if check.scope == scope and entry.name not in settings.skip and \
                check().applies(attack, spec, settings):
            out.append(entry.name)
    return out
