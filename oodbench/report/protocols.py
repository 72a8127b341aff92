"""Which protocol produced each attacked row, as a note under every table.

An attacked number is only an upper bound on the worst case, and how tight it is depends on the
attack: the papers' single PGD run and the attack ensemble give very different numbers on the
same points (issue 19: knn on MNIST noise, 20% vs under 10% AUROC). A reader of a pasted table
must see which one it is, so each report names, per attacked row, the attack, its ball and its
version with the budget that ran. The text is read from the stored jobs' resolved
configurations (what actually ran, defaults filled in), not from the suite's entry.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from oodbench.core.registry import attacks
from oodbench.pipeline.store import ResultStore

_OPTIMIZERS = {"pgd": "PGD", "apgd": "APGD", "monotone-pgd": "monotone PGD"}


def _ball(threat: Optional[Mapping[str, Any]]) -> str:
    if not threat:
        return ""
    eps = float(threat.get("eps", 0.0))
    return f"{threat.get('norm', '?')} {eps:.4g}"


def _member(member: Mapping[str, Any]) -> str:
    name, steps = str(member.get("name")), int(member.get("steps") or 0)
    restarts = int(member.get("restarts") or 1)
    if name == "apgd":
        return f"APGD {steps:,} steps" + (f" \u00d7 {restarts} restarts" if restarts > 1 else "")
    if name == "apgd-surrogate":
        return f"APGD on the detector's smooth surrogate {steps:,} steps"
    if name == "pgd-starts":
        starts = list(member.get("starts") or [])
        return f"monotone PGD {steps:,} steps from {len(starts)} starts ({', '.join(starts)})"
    if name == "square":
        return f"Square {steps:,} queries"
    return f"{name} {steps:,} steps"


def describe_attack(attack: Mapping[str, Any]) -> str:
    """One line for a stored job's resolved attack configuration."""
    name = str(attack.get("name"))
    ball = _ball(attack.get("threat"))
    head = f"{name}, {ball}" if ball else name
    members = attack.get("members")
    if members:
        return (f"{head}; ensemble (version {attack.get('version') or 'custom'}), per point the best "
                f"of: {', '.join(_member(m) for m in members)}")
    if name == "certified":
        return f"{head}; certified upper bound of the score over the ball (interval bound propagation)"
    optimizer = attack.get("optimizer")
    if optimizer:
        steps = int(attack.get("steps") or 0)
        run = f"{_OPTIMIZERS.get(str(optimizer), str(optimizer))} {steps:,} steps"
        if attack.get("step_size") is not None and optimizer != "apgd":
            run += f" of {float(attack['step_size']):.4g}"
        restarts = int(attack.get("restarts") or 1)
        if restarts > 1:
            run += f" \u00d7 {restarts} restarts"
        # a paper key omits its version (job keys from before versions); unversioned attacks have none
        versioned = name in attacks and getattr(attacks.get(name), "has_versions", False)
        version = attack.get("version") or ("paper" if versioned else None)
        return f"{head}; single run{f' (version {version})' if version else ''}: {run}"
    version = attack.get("version")
    return f"{head}; version {version}" if version else head


def attack_protocols(store: ResultStore, run_id: int) -> dict[str, str]:
    """``{row label: protocol}`` of every attacked row of a run, in the run's order. Jobs of one
    row that differ only in the objective (each detector ascends its own score) share a line."""
    lines: dict[str, list[str]] = {}
    for job_hash, probe in store.run_jobs(run_id)[["job_hash", "probe"]].itertuples(index=False):
        if probe is None:
            continue
        record = store.job_record(job_hash)
        attack = None if record is None else record.config.get("attack")
        if not attack:
            continue
        text = describe_attack({k: v for k, v in attack.items() if k != "objective"})
        if text not in lines.setdefault(str(probe), []):
            lines[str(probe)].append(text)
    return {probe: "; ".join(texts) for probe, texts in lines.items()}


def protocol_notes(protocols: Mapping[str, str]) -> list[str]:
    """The notes a table prints: one per attacked row."""
    return [f"{label}: {text}" for label, text in protocols.items()]


__all__ = ["attack_protocols", "describe_attack", "protocol_notes"]
