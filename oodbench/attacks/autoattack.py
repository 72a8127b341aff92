"""Robust accuracy under AutoAttack (Croce & Hein 2020), as Augustin et al. (2020) evaluate it.

The registered attack ``autoattack`` runs ``pyautoattack`` on in-distribution test points and
returns the model's logits on the adversarial images, so the runner scores the row like the
in-distribution row: its test error is 1 − robust accuracy. A suite probe::

    - name: AutoAttack Linf 8/255
      n: 1000                                    # points of the in-distribution test set
      attack: {name: autoattack, threat: {norm: Linf, eps: 0.0313725}}
    - name: AutoAttack L2 0.5 (fast)
      attack: {name: autoattack, threat: {norm: L2, eps: 0.5},
               options: {version: custom, attacks: [apgd-ce]}}

Resuming. ``pyautoattack`` 0.2.0 has a ``state_path`` argument, but it cannot serve here: its
state file keeps only the per-point robust flags, not the adversarial points, so a restored run
returns the *clean* image for every point broken before the interruption and the adversarial
logits this attack returns could not be recovered; moreover 0.2.0 writes the attack set as a
string and so rejects its own file on restore ("different set of attacks"). Resuming is done
here instead: the points are attacked in chunks of ``chunk_size``, and
after each chunk the adversarial logits of every finished chunk are written (atomically) to one
``.npz`` state file in ``ctx.artifact_dir``. A run that is killed and started again attacks only
the chunks the file lacks. The file records a fingerprint of everything that determines the
result (threat model, version and attacks, seed, chunk size, the points, the labels and the
model's clean logits); a file with another fingerprint is ignored and overwritten. Each chunk is
one complete AutoAttack evaluation of its points, seeded with the suite's seed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from oodbench.attacks.base import (Attack, AttackContext, AttackSpec, GradientObjective,
                                   merge_options)
from oodbench.core.cost import Cost
from oodbench.core.arrays import ArrayKey
from oodbench.core.registry import attacks
from oodbench.core.rows import RowKind

VERSIONS = ("standard", "plus", "rand", "custom")
ATTACK_NAMES = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
OPTION_DEFAULTS: dict[str, Any] = {"version": "standard", "attacks": None, "chunk_size": 1000,
                                   "save_adversarial": False}
_UNUSED_FIELDS = ("objective", "optimizer", "steps", "step_size", "restarts", "random_start",
                  "momentum")
INSTALL_HINT = "pip install 'oodbench[autoattack]'"


def _import_autoattack():
    try:
        from pyautoattack import AutoAttack
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"the `autoattack` attack needs the package pyautoattack: {INSTALL_HINT}"
                          ) from err
    return AutoAttack


def state_file(artifact_dir: Path, label: str, seed: int) -> Path:
    """The resumable state file of one run: ``autoattack-<label>-seed<seed>.npz``."""
    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", label).strip("_") or "attack"
    return Path(artifact_dir) / f"autoattack-{slug}-seed{seed}.npz"


def _fingerprint(config: dict[str, Any], images: Any, labels: torch.Tensor,
                 in_logits: np.ndarray, chunk: int = 1024) -> str:
    """sha256 over the config and the arrays; the images are hashed ``chunk`` rows at a time
    (a data set read in batches is never read whole; the digest is the same as in one piece)."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    h.update(str((tuple(int(s) for s in images.shape), "<f4")).encode())
    for lo in range(0, len(images), chunk):
        h.update(images[lo:lo + chunk].detach().cpu().float().contiguous().numpy().tobytes())
    for a in (labels.detach().cpu().numpy(), np.ascontiguousarray(in_logits)):
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _load_state(path: Optional[Path], fingerprint: str) -> Optional[dict[str, np.ndarray]]:
    if path is None or not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            state = {k: f[k] for k in f.files}
    except Exception:  # a truncated or foreign file: start afresh
        return None
    if str(state.get("fingerprint", "")) != fingerprint:
        return None
    return state


def _save_state(path: Path, state: dict[str, np.ndarray]) -> bool:
    """Write the state file atomically (a kill mid-write leaves the previous file intact).

    The state file only saves work on a resume, so a file that cannot be written (full disk,
    read-only folder) warns and the attack goes on; returns whether it was saved."""
    tmp = path.with_name(path.name + ".tmp.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, **state)
        os.replace(tmp, path)
    except OSError as err:
        warnings.warn(f"autoattack: cannot save the state file {path} ({err.strerror or err}); "
                      "the attack goes on, but a killed run will start this attack over",
                      stacklevel=2)
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        return False
    return True


@attacks.register("autoattack")
class AutoAttackRobustness(Attack):
    """Robust accuracy under AutoAttack via pyautoattack (Linf 8/255 by default; resumable).

    Options: ``version`` (``standard`` — APGD-CE, APGD-T, FAB-T, Square —, ``plus``, ``rand`` or
    ``custom``), ``attacks`` (the list for ``custom``, e.g. ``[apgd-ce]``), ``chunk_size``
    (points per resumable chunk, default 1000) and ``save_adversarial`` (also keep the
    adversarial images in the state file, default false). Threat: ``Linf`` or ``L2``. The engine
    fields (objective, optimizer, steps, …) do not apply: AutoAttack fixes its own budgets.
    With fewer than 10 classes, APGD-T and FAB-T target every other class (K − 1 targets).

    Returns ``logits`` (N×K float32, the model's logits on the adversarial points; a point that
    survives keeps its clean image) and ``labels``.
    """

    source = "in-distribution"
    row = RowKind.IN_DISTRIBUTION

    def estimate_cost(self, spec: AttackSpec, n_points: int) -> Cost:
        """The standard version's budget on every point: APGD-CE and APGD-T (9 targets) with
        100 iterations each, FAB-T (9 targets × 100) and Square's 5000 queries; points broken
        early skip the rest, so this is an upper bound."""
        return Cost(forward=n_points * 5000, gradient=n_points * 1900)

    def defaults(self, in_dataset: str) -> dict[str, Any]:
        return {"threat": {"norm": "Linf", "eps": 8 / 255}, "options": dict(OPTION_DEFAULTS)}

    def resolve(self, spec: AttackSpec, in_dataset: str) -> AttackSpec:
        for name in _UNUSED_FIELDS:
            if getattr(spec, name) is not None:
                raise ValueError(f"autoattack: `{name}` does not apply (AutoAttack fixes its own "
                                 "attacks and budgets); remove it, or use options.version/attacks")
        resolved = super().resolve(spec, in_dataset)
        options = merge_options("autoattack", spec.options, OPTION_DEFAULTS)
        resolved = resolved.model_copy(update={"options": options})
        _check(resolved)
        return resolved

    def min_classes(self, spec: AttackSpec) -> tuple[int, str]:
        """APGD-DLR's loss reads the third-largest logit, targeted APGD-T's the fourth."""
        opts = {**OPTION_DEFAULTS, **spec.options}
        names = {"standard": ["apgd-ce", "apgd-t", "fab-t", "square"],
                 "plus": list(ATTACK_NAMES), "rand": ["apgd-ce", "apgd-dlr"]}.get(
            opts["version"], list(opts["attacks"] or []))
        if "apgd-t" in names:
            return 4, "APGD-T's targeted DLR loss reads the fourth-largest logit"
        if "apgd-dlr" in names:
            return 3, "APGD-DLR's loss reads the third-largest logit"
        return 2, "a softmax over one class is constant: no input changes the prediction"

    def gradient_objective(self, ctx: AttackContext) -> Optional[GradientObjective]:
        """APGD-CE's: the cross-entropy of the true label, from a random start in the ball."""
        from oodbench.attacks.engine import AttackConfig, LogitsHead

        if ctx.labels is None or ctx.spec.threat is None:
            return None
        config = AttackConfig(threat=ctx.spec.threat, objective="ce", optimizer="apgd")
        return GradientObjective(LogitsHead(config), ctx.labels.long(), config)

    def run(self, ctx: AttackContext) -> dict[str, np.ndarray]:
        AutoAttack = _import_autoattack()
        spec = ctx.spec
        _check(spec)
        if ctx.labels is None:
            raise ValueError("autoattack needs labelled in-distribution points")
        assert spec.threat is not None
        opts = {**OPTION_DEFAULTS, **spec.options}
        version, chunk = opts["version"], int(opts["chunk_size"])
        images, labels = ctx.images, ctx.labels.long()  # images: read chunk by chunk below
        n, n_classes = len(images), int(np.asarray(ctx.in_logits).shape[1])
        config = {"norm": spec.threat.norm, "eps": spec.threat.eps, "version": version,
                  "attacks": opts["attacks"] if version == "custom" else None, "seed": ctx.seed,
                  "chunk_size": chunk, "n": n, "save_adversarial": bool(opts["save_adversarial"])}
        fingerprint = _fingerprint(config, images, labels, ctx.in_logits)
        path = None if ctx.artifact_dir is None else state_file(ctx.artifact_dir, ctx.label, ctx.seed)
        n_chunks = -(-n // chunk)

        state = _load_state(path, fingerprint)
        if state is None:
            state = {"fingerprint": np.array(fingerprint),
                     ArrayKey.LOGITS.value: np.zeros((n, n_classes), dtype=np.float32),
                     "done": np.zeros(n_chunks, dtype=bool)}
            if opts["save_adversarial"]:
                state["x_adv"] = np.zeros(tuple(images.shape), dtype=np.float32)

        model = ctx.model.eval()
        todo = [c for c in range(n_chunks) if not state["done"][c]]
        for c in tqdm(todo, desc=ctx.label, disable=not ctx.progress, leave=False):
            lo, hi = c * chunk, min(n, (c + 1) * chunk)
            aa = AutoAttack(model, norm=spec.threat.norm, eps=spec.threat.eps, version=version,
                            device=ctx.device, seed=ctx.seed,
                            **({"attacks": list(opts["attacks"])} if version == "custom" else {}))
            # The standard/plus versions assume 10 classes (9 targets); use every other class.
            aa.apgd_targeted.n_target_classes = min(aa.apgd_targeted.n_target_classes, n_classes - 1)
            aa.fab.n_target_classes = min(aa.fab.n_target_classes, n_classes - 1)
            x_adv, _ = aa.run_standard_evaluation(images[lo:hi].float(), labels[lo:hi],
                                                  batch_size=ctx.batch_size)
            state[ArrayKey.LOGITS.value][lo:hi] = _logits(model, x_adv, ctx.batch_size, ctx.device)
            if "x_adv" in state:
                state["x_adv"][lo:hi] = x_adv.detach().cpu().float().numpy()
            state["done"][c] = True
            if path is not None and not _save_state(path, state):
                path = None  # warned once; do not retry every chunk

        return {ArrayKey.LOGITS.value: state[ArrayKey.LOGITS.value].astype(np.float32, copy=True),
                ArrayKey.LABELS.value: labels.numpy().astype(np.int64, copy=True)}


def _check(spec: AttackSpec) -> None:
    if spec.threat is None:
        raise ValueError("autoattack needs a threat model, e.g. {norm: Linf, eps: 0.031}")
    if spec.threat.norm not in ("Linf", "L2"):
        raise ValueError(f"autoattack supports the Linf and L2 threat models, not "
                         f"{spec.threat.norm} (AutoAttack's L1 version is not wired up here)")
    opts = {**OPTION_DEFAULTS, **spec.options}
    if opts["version"] not in VERSIONS:
        raise ValueError(f"autoattack: options.version must be one of {', '.join(VERSIONS)}, "
                         f"got {opts['version']!r}")
    if opts["version"] == "custom":
        names = opts["attacks"]
        if not isinstance(names, (list, tuple)) or not names or any(a not in ATTACK_NAMES for a in names):
            raise ValueError("autoattack: version 'custom' needs options.attacks, a non-empty list "
                             f"of {', '.join(ATTACK_NAMES)}; got {names!r}")
    elif opts["attacks"] is not None:
        raise ValueError(f"autoattack: options.attacks applies only to version 'custom' (the "
                         f"{opts['version']!r} version fixes its attacks)")
    size = opts["chunk_size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"autoattack: options.chunk_size must be a positive integer, got {size!r}")


def _logits(model: torch.nn.Module, x: torch.Tensor, batch_size: int,
            device: torch.device) -> np.ndarray:
    out = []
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            out.append(model(x[s:s + batch_size].to(device)).float().cpu())
    return torch.cat(out).numpy()
