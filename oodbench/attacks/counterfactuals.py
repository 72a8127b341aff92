"""Visual counterfactuals (Augustin et al. 2020, Sec. 4–5, Fig. 2–3): targeted APGD in lp balls
of growing radius.

For a test image x, a target class t and a budget ε, the counterfactual is (their eq. 7)

    x^(t) = argmax over z in [0,1]^d with ||z − x||_2 ≤ ε of p_t(z),

the image in the ball on which the model is most confident in t (t may be the predicted class:
"how would x look if the model were even surer?"). For robust models class features appear in
x^(t); for plain models high target confidence comes with imperceptible noise. The attack runs
the engine's APGD on the ``targeted-conf`` objective (log p_t) for every (image, target, radius)
and reports how confident the model becomes. A suite probe::

    - name: counterfactuals
      attack: {name: counterfactuals, options: {n_images: 8, radii: [0.5, 1.0, 2.0, 3.0]}}

Balls are nested, so the best point found for a smaller radius is also feasible for a larger
one: the result for each radius is the better of that radius's APGD run and the previous
radius's result, compared by the reported target confidence (float64). The reported target
confidence is therefore non-decreasing in the radius; the array ``carried`` says where the
smaller radius's point was kept.

Files, in ``ctx.artifact_dir``: one PNG per image, ``counterfactuals-<k>-idx<i>.png`` (k: rank
in the selection, i: index in the attacked test points). Rows are targets, columns the original
followed by one column per radius; under every cell are two lines of text — the column
(``original y=<label>`` / ``L2 r=0.5``) and the confidence in the row's target class
(``p(3)=0.873``). Images are upscaled by an integer factor with nearest-neighbour
interpolation to about ``cell_px`` pixels (default 96) so the text fits. The index
``counterfactuals.json`` beside them lists the files (relative names), the selected indices,
labels, targets, radii, norm, and the target confidences; the runner stores only the arrays.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from oodbench.attacks.base import Attack, AttackContext, AttackSpec, merge_options
from oodbench.attacks.engine import AttackConfig, run_attack
from oodbench.attacks.threats import ThreatModel
from oodbench.core.arrays import ArrayKey
from oodbench.core.cost import Cost
from oodbench.core.registry import attacks
from oodbench.core.rows import RowKind

DEFAULT_RADII = {"L2": [0.5, 1.0, 2.0, 3.0], "Linf": [2 / 255, 4 / 255, 8 / 255, 16 / 255],
                 "L1": [2.0, 5.0, 10.0, 20.0]}
OPTION_DEFAULTS: dict[str, Any] = {"norm": "L2", "radii": None, "n_images": 8, "targets": "all",
                                   "indices": None, "cell_px": 96}
PAD = 4
"""Pixels between cells and around the grid."""
TEXT_HEIGHT = 26
"""Pixels of the two text lines under every cell."""
INDEX_FILE = "counterfactuals.json"


def _options(spec: AttackSpec) -> dict[str, Any]:
    opts = merge_options("counterfactuals", spec.options, OPTION_DEFAULTS)
    if opts["norm"] not in DEFAULT_RADII:
        raise ValueError(f"counterfactuals: options.norm must be L2, Linf or L1, got {opts['norm']!r}")
    radii = DEFAULT_RADII[opts["norm"]] if opts["radii"] is None else opts["radii"]
    if (not isinstance(radii, (list, tuple)) or not radii
            or any(isinstance(r, bool) or not isinstance(r, (int, float)) or r <= 0 for r in radii)):
        raise ValueError(f"counterfactuals: options.radii must be a list of positive numbers, "
                         f"got {radii!r}")
    opts["radii"] = sorted(float(r) for r in radii)
    targets = opts["targets"]
    if targets != "all" and (not isinstance(targets, (list, tuple)) or not targets or any(
            isinstance(t, bool) or not isinstance(t, int) or t < 0 for t in targets)):
        raise ValueError(f"counterfactuals: options.targets must be 'all' or a list of class "
                         f"indices, got {targets!r}")
    for key in ("n_images", "cell_px"):
        v = opts[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"counterfactuals: options.{key} must be a positive integer, got {v!r}")
    idx = opts["indices"]
    if idx is not None and (not isinstance(idx, (list, tuple)) or not idx or any(
            isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in idx)):
        raise ValueError(f"counterfactuals: options.indices must be a list of indices, got {idx!r}")
    return opts


@attacks.register("counterfactuals")
class Counterfactuals(Attack):
    """Visual counterfactuals: targeted APGD on test images in L2 balls of radius 0.5–3 (RATIO).

    Options: ``norm`` (L2), ``radii`` ([0.5, 1, 2, 3] for L2), ``n_images`` (8 test images, a
    seeded random choice unless ``indices`` lists them), ``targets`` (``all`` classes, or a list)
    and ``cell_px`` (96: image size in the PNG grids). ``steps`` (100; given as the spec field or
    as ``options.steps``), ``optimizer`` (apgd), ``restarts`` (1) and ``random_start`` (false:
    start at the test image) go to the engine; the objective is always ``targeted-conf``.

    Returns ``target_confidence`` (n_images, n_targets, n_radii), ``clean_confidence``
    (n_images, n_targets), ``predicted`` (n_images, n_targets, n_radii), ``carried`` (same shape,
    bool), ``indices``, ``labels``, ``targets`` and ``radii``; PNG grids and
    ``counterfactuals.json`` go to the artifact directory. Summary: ``target-conf@<r>``, the mean
    target confidence over images and targets per radius.
    """

    source = "in-distribution"
    row = RowKind.SUMMARY

    def estimate_cost(self, spec: AttackSpec, n_points: int) -> Cost:
        """``n_images`` × targets × radii × steps gradient evaluations; ``targets: all`` is
        counted as 9 (ten classes), as the plan is made before the model is loaded."""
        opts = _options(spec)
        targets = opts["targets"]
        n_targets = 9 if targets == "all" else len(targets) if isinstance(targets, list) else 1
        n_images = min(int(opts["n_images"]), n_points)
        return Cost(forward=n_images, gradient=n_images * n_targets * len(opts["radii"])
                    * (spec.steps or 100) * (spec.restarts or 1))

    def defaults(self, in_dataset: str) -> dict[str, Any]:
        return {"objective": "targeted-conf", "optimizer": "apgd", "steps": 100, "restarts": 1,
                "random_start": False, "options": dict(OPTION_DEFAULTS)}

    def resolve(self, spec: AttackSpec, in_dataset: str) -> AttackSpec:
        if spec.threat is not None:
            raise ValueError("counterfactuals: set the balls with options.norm and options.radii, "
                             "not `threat`")
        if spec.objective not in (None, "targeted-conf"):
            raise ValueError("counterfactuals: the objective is always 'targeted-conf'")
        options = dict(spec.options)
        update: dict[str, Any] = {}
        if "steps" in options:
            steps = options.pop("steps")
            if spec.steps is not None and spec.steps != steps:
                raise ValueError(f"counterfactuals: steps given twice ({spec.steps} and "
                                 f"options.steps {steps})")
            update["steps"] = steps
        spec = spec.model_copy(update={"options": options})
        opts = _options(spec)
        resolved = super().resolve(spec, in_dataset)
        return AttackSpec.model_validate({**resolved.model_dump(exclude_unset=True), **update,
                                          "options": opts})

    def run(self, ctx: AttackContext) -> dict[str, np.ndarray]:
        spec = ctx.spec
        opts = _options(spec)
        if ctx.labels is None:
            raise ValueError("counterfactuals needs labelled in-distribution points")
        n_classes = int(np.asarray(ctx.in_logits).shape[1])
        targets = list(range(n_classes)) if opts["targets"] == "all" else list(opts["targets"])
        if any(t >= n_classes for t in targets):
            raise ValueError(f"counterfactuals: targets {targets} outside the model's "
                             f"{n_classes} classes")
        indices = _choose(len(ctx.images), opts["n_images"], opts["indices"], ctx.seed)
        radii = opts["radii"]
        x = ctx.images[indices].float()
        n_img, n_t, n_r = len(indices), len(targets), len(radii)
        # Every (image, target) pair is one point of the engine's batch.
        xs = x.repeat_interleave(n_t, dim=0)
        ts = torch.tensor(targets, dtype=torch.long).repeat(n_img)

        model = ctx.model.eval()
        with torch.no_grad():
            clean_logits = torch.cat([model(x[s:s + ctx.batch_size].to(ctx.device)).float().cpu()
                                      for s in range(0, n_img, ctx.batch_size)])
        clean_conf = F.softmax(clean_logits.double(), 1)[:, targets].numpy()

        target_conf = np.zeros((n_img, n_t, n_r))
        predicted = np.zeros((n_img, n_t, n_r), dtype=np.int64)
        carried = np.zeros((n_img, n_t, n_r), dtype=bool)
        adv_images = torch.zeros((n_r,) + tuple(xs.shape))
        best_x: Optional[torch.Tensor] = None
        best_score: Optional[torch.Tensor] = None
        best_logits: Optional[torch.Tensor] = None
        for k, radius in enumerate(radii):
            cfg = AttackConfig(threat=ThreatModel(norm=opts["norm"], eps=radius),
                               objective="targeted-conf", optimizer=spec.optimizer or "apgd",
                               steps=spec.steps or 100, step_size=spec.step_size,
                               restarts=spec.restarts or 1,
                               random_start=bool(spec.random_start), select="objective")
            res = run_attack(model, xs, cfg, target=ts, batch_size=ctx.batch_size,
                             device=ctx.device, seed=ctx.seed + k, progress=ctx.progress,
                             desc=f"{ctx.label} r={radius:g}")
            cur_x, cur_logits = res.x_adv, res.logits
            # Compare by the reported quantity (target confidence in float64), not the float32
            # objective, which saturates near confidence 1.
            cur_score = F.softmax(cur_logits.double(), 1).gather(1, ts[:, None]).squeeze(1)
            keep = torch.zeros(len(xs), dtype=torch.bool)
            if best_score is not None:
                keep = best_score > cur_score  # the smaller ball's point is better: keep it
                cur_x = torch.where(keep.view(-1, 1, 1, 1), best_x, cur_x)
                cur_score = torch.where(keep, best_score, cur_score)
                cur_logits = torch.where(keep.view(-1, 1), best_logits, cur_logits)
            best_x, best_score, best_logits = cur_x, cur_score, cur_logits
            probs = F.softmax(cur_logits.double(), 1)
            target_conf[:, :, k] = cur_score.view(n_img, n_t).numpy()
            predicted[:, :, k] = probs.argmax(1).view(n_img, n_t).numpy()
            carried[:, :, k] = keep.view(n_img, n_t).numpy()
            adv_images[k] = cur_x.cpu()

        labels = ctx.labels[indices].numpy().astype(np.int64)
        if ctx.artifact_dir is not None:
            write_grids(Path(ctx.artifact_dir), x, adv_images.view(n_r, n_img, n_t, *x.shape[1:]),
                        indices=indices, labels=labels, targets=targets, radii=radii,
                        norm=opts["norm"], clean_conf=clean_conf, target_conf=target_conf,
                        cell_px=opts["cell_px"])
        return {"target_confidence": target_conf, "clean_confidence": clean_conf,
                "predicted": predicted, "carried": carried,
                "indices": np.asarray(indices, dtype=np.int64), ArrayKey.LABELS.value: labels,
                "targets": np.asarray(targets, dtype=np.int64),
                "radii": np.asarray(radii, dtype=np.float64)}

    def summarize(self, arrays: dict[str, np.ndarray]) -> dict[str, float]:
        conf = np.asarray(arrays["target_confidence"], dtype=np.float64)
        return {f"target-conf@{r:g}": float(conf[:, :, k].mean())
                for k, r in enumerate(np.asarray(arrays["radii"]).tolist())}


def _choose(n: int, count: int, given: Optional[list[int]], seed: int) -> list[int]:
    if given is not None:
        if max(given) >= n:
            raise ValueError(f"counterfactuals: options.indices {given} beyond the {n} test points")
        return list(given)
    if count >= n:
        return list(range(n))
    return sorted(np.random.default_rng(seed).choice(n, size=count, replace=False).tolist())


def grid_size(n_rows: int, n_cols: int, height: int, width: int, cell_px: int = 96) -> tuple[int, int]:
    """(width, height) in pixels of a grid of n_rows × n_cols images of height × width."""
    factor = max(1, cell_px // max(height, width))
    cw, ch = width * factor, height * factor
    return PAD + n_cols * (cw + PAD), PAD + n_rows * (ch + TEXT_HEIGHT + PAD)


def _to_pil(img: torch.Tensor, factor: int):
    from PIL import Image

    a = (img.detach().cpu().clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    if a.shape[0] == 3:
        pil = Image.fromarray(a.transpose(1, 2, 0), "RGB")
    else:  # one channel (or an odd number: show their mean) as grey
        pil = Image.fromarray(a.mean(0).round().astype(np.uint8) if a.shape[0] != 1 else a[0], "L")
    pil = pil.convert("RGB")
    return pil.resize((pil.width * factor, pil.height * factor), Image.NEAREST)


def write_grids(out: Path, x: torch.Tensor, adv: torch.Tensor, *, indices: list[int],
                labels: np.ndarray, targets: list[int], radii: list[float], norm: str,
                clean_conf: np.ndarray, target_conf: np.ndarray, cell_px: int = 96) -> list[Path]:
    """One PNG per image (rows: targets; columns: original, then each radius) and the index
    ``counterfactuals.json``. ``adv`` is (n_radii, n_images, n_targets, C, H, W)."""
    from PIL import Image, ImageDraw, ImageFont

    out.mkdir(parents=True, exist_ok=True)
    font = ImageFont.load_default()
    _, _, h, w = x.shape
    factor = max(1, cell_px // max(h, w))
    cw, ch = w * factor, h * factor
    n_t, n_r = len(targets), len(radii)
    files = []
    for i, idx in enumerate(indices):
        size = grid_size(n_t, n_r + 1, h, w, cell_px)
        canvas = Image.new("RGB", size, "white")
        draw = ImageDraw.Draw(canvas)
        for j, t in enumerate(targets):
            top = PAD + j * (ch + TEXT_HEIGHT + PAD)
            cells = [(x[i], f"original y={labels[i]}", f"p({t})={clean_conf[i, j]:.3f}")]
            cells += [(adv[k, i, j], f"{norm} r={r:g}", f"p({t})={target_conf[i, j, k]:.3f}")
                      for k, r in enumerate(radii)]
            for c, (img, line1, line2) in enumerate(cells):
                left = PAD + c * (cw + PAD)
                canvas.paste(_to_pil(img, factor), (left, top))
                draw.text((left, top + ch + 1), line1, fill="black", font=font)
                draw.text((left, top + ch + 1 + TEXT_HEIGHT // 2), line2, fill="black", font=font)
        path = out / f"counterfactuals-{i:03d}-idx{idx}.png"
        canvas.save(path)
        files.append(path)
    index = {"norm": norm, "radii": radii, "targets": targets,
             "layout": "one PNG per image; rows = targets, columns = original then radii; "
                       "text: column, target confidence",
             "images": [{"file": f.name, "index": int(idx), "label": int(labels[i]),
                         "clean_confidence": [float(v) for v in clean_conf[i]],
                         "target_confidence": [[float(v) for v in row] for row in target_conf[i]]}
                        for i, (idx, f) in enumerate(zip(indices, files))]}
    (out / INDEX_FILE).write_text(json.dumps(index, indent=2))
    return files
