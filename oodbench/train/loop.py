"""The one training loop: any registered method, resumable, CPU or CUDA (+AMP).

Per step: B in-distribution samples (shuffled per epoch by a generator seeded with the recipe
seed), optionally augmented; for methods with an out-distribution ⌈λB⌉ out samples (noise built
from that batch, or a real data set); the method's loss; one optimizer step. The learning rate
drops by ``schedule.gamma`` at the schedule's milestones. At the end of every epoch a checkpoint
is written (:mod:`oodbench.train.checkpoint`); an interrupted run started again with the same
recipe continues from it and ends with the same weights as an uninterrupted run.

Outputs: the network's weights as safetensors (loading them never executes code) and a model card
(YAML, beside the weights) in the ``model_zoo/`` format: architecture, sha256 of the weights,
the resolved recipe, the method's settings (λ, out-distribution, out-loss, attacks), the data
hash, per-epoch history and final metrics (test error and MMC, MMC/AUROC on smoothed and uniform
noise built from the test set, optionally on adversarial noise).

On CUDA with ``amp: true`` the loss (including the inner attacks) runs under
``torch.autocast`` in bfloat16 (float16 with a gradient scaler where bfloat16 is unsupported);
on the CPU the very same code runs without autocast.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Optional, Union

import torch
import yaml
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

from oodbench.core.version import VERSION
from oodbench.data import DataRequest, ImageSet, load_dataset
from oodbench.core.errors import MissingFileError
from oodbench.metrics import auroc, confidence, mean_max_confidence, test_error
from oodbench.models.normalize import with_normalization
from oodbench.core.registry import architectures, attacks, trainers
from oodbench.pipeline.execute.forward import forward_logits, resolve_device
from oodbench.pipeline.suite import resolve_data_root as _resolve_data_root
from oodbench.train import checkpoint as ckpt
from oodbench.train.data import OutSource, augment, generator, load_in_distribution, step_seed
from oodbench.train.methods import Batch, Method
from oodbench.train.recipe import Recipe, RecipeError

Resume = Union[bool, Literal["auto"]]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_data_root(recipe: Recipe, override: Union[str, Path, None]) -> Path:
    """The same rule as for suites (``oodbench.pipeline.suite.resolve_data_root``)."""
    return _resolve_data_root(recipe.data_root, recipe.base_dir, override)


def _optimizer(recipe: Recipe, model: nn.Module) -> torch.optim.Optimizer:
    if recipe.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                           weight_decay=recipe.weight_decay,
                           nesterov=recipe.nesterov and recipe.momentum > 0)


def _amp(recipe: Recipe, dev: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype. ``amp: true`` means CUDA only (on a CPU bfloat16 is slow without AMX
    and float16 is unsupported); ``amp: bfloat16`` forces bfloat16 on any device, which is how
    the CUDA + AMP code path is exercised on machines without a GPU."""
    if recipe.amp == "bfloat16":
        return torch.bfloat16
    if dev.type != "cuda" or not recipe.amp:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _grad_scaler() -> Any:
    if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3
        return torch.amp.GradScaler("cuda")
    return torch.cuda.amp.GradScaler()  # pragma: no cover - older torch


def evaluate_model(model: nn.Module, recipe: Recipe, test_set: ImageSet, *, device: torch.device,
                   root: Path, progress: bool = False) -> dict[str, float]:
    """The card's final metrics on the in-distribution test set and noise built from it."""
    assert test_set.labels is not None
    model.eval()
    logits = forward_logits(model, test_set.images, device=device)
    conf_in = confidence(logits)
    out = {"test_error": test_error(test_set.labels.numpy(), logits.argmax(1)),
           "test_mmc": mean_max_confidence(conf_in)}
    ev = recipe.evaluate
    noise: dict[str, torch.Tensor] = {}
    for name in ("smoothed-noise", "uniform-noise"):
        if ev.noise_n == 0 and not (name == "smoothed-noise" and ev.adversarial_noise_n):
            continue
        n = max(ev.noise_n, ev.adversarial_noise_n if name == "smoothed-noise" else 0)
        noise[name] = load_dataset(name, DataRequest(root=root, n=n, seed=recipe.seed,
                                                     reference=test_set)).images
        if ev.noise_n:
            conf = confidence(forward_logits(model, noise[name][:ev.noise_n], device=device))
            key = name.replace("-", "_")
            out[f"{key}_mmc"], out[f"{key}_auroc"] = mean_max_confidence(conf), auroc(conf_in, conf)
    if ev.adversarial_noise_n:
        from oodbench.attacks import run_attack
        from oodbench.attacks.base import AttackSpec

        attack = attacks.get("adversarial-noise")()
        spec = attack.resolve(AttackSpec(name="adversarial-noise", steps=ev.adversarial_noise_steps),
                              recipe.dataset.dataset)
        result = run_attack(
            model, noise["smoothed-noise"][:ev.adversarial_noise_n], attack.config(spec),
            device=device, seed=recipe.seed, progress=progress, desc="adversarial noise")
        conf = confidence(result.logits.numpy())
        out["adversarial_noise_mmc"] = mean_max_confidence(conf)
        out["adversarial_noise_auroc"] = auroc(conf_in, conf)
    return {k: round(float(v), 6) for k, v in out.items()}


class _EpochStats:
    """Running sums of one epoch on the training device (synchronised only when read)."""

    def __init__(self) -> None:
        self.count = 0
        self.sums: dict[str, torch.Tensor] = {}

    def add(self, n: int, correct: torch.Tensor, loss: torch.Tensor, parts: dict[str, torch.Tensor]):
        self.count += n
        for key, value in {"correct": correct, "loss": loss.detach() * n,
                           **{k: v * n for k, v in parts.items()}}.items():
            value = value.float()
            self.sums[key] = self.sums[key] + value if key in self.sums else value

    def means(self) -> dict[str, float]:
        if not self.count:
            return {}
        out = {("accuracy" if k == "correct" else f"loss_{k}" if k in ("in", "out") else k):
               float(v) / self.count for k, v in self.sums.items()}
        return {k: round(v, 6) for k, v in out.items()}


def train_from_recipe(recipe: Recipe, *, device: Optional[str] = None,
                      output: Union[str, Path, None] = None,
                      data_root: Union[str, Path, None] = None, progress: bool = True,
                      checkpoint: Union[str, Path, None] = None, resume: Resume = "auto",
                      stop_after: Optional[int] = None,
                      keep_checkpoint: bool = False) -> dict[str, Any]:
    """Train ``recipe``'s model; write weights + card; return the card as a dict.

    ``checkpoint``: the resumable checkpoint file (default ``<weights stem>.ckpt.pt`` beside
    the weights). ``resume``: ``"auto"`` continues from a checkpoint of the same recipe and data
    when one exists (and refuses one of another recipe), ``True`` requires one, ``False`` starts
    over. ``stop_after``: stop after that many epochs (counted from the start of training), keep
    the checkpoint and return ``{"status": "stopped", ...}`` without writing weights.
    ``keep_checkpoint``: keep the checkpoint after a completed run (default: delete it).
    """
    t_start = time.perf_counter()
    dev = resolve_device(device or recipe.device)
    root = resolve_data_root(recipe, data_root)
    train_set, test_set = load_in_distribution(recipe, root)
    assert train_set.labels is not None
    method: Method = trainers.get(recipe.method)(recipe)
    out_source = (OutSource(recipe.out_distribution, root=root, shape=train_set.shape,
                            seed=recipe.seed, augment_spec=recipe.augment)
                  if method.needs_out and recipe.out_distribution is not None else None)

    torch.manual_seed(recipe.seed)
    net: nn.Module = architectures.get(recipe.arch)(**recipe.arch_options)
    model = with_normalization(net, recipe.normalize).to(dev)
    opt = _optimizer(recipe, model)
    n, bsz = len(train_set), recipe.batch_size
    if recipe.drop_last and n < bsz:
        raise RecipeError(f"recipe {recipe.name!r}: drop_last with batch_size {bsz} leaves no "
                          f"batch of the {n} training images")
    steps_per_epoch = n // bsz if recipe.drop_last else math.ceil(n / bsz)
    milestones = recipe.schedule.points(recipe.epochs, steps_per_epoch)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones,
                                                 gamma=recipe.schedule.gamma)
    per_step = recipe.schedule.per == "step" and recipe.schedule.epochs is None
    amp_dtype = _amp(recipe, dev)
    scaler = _grad_scaler() if amp_dtype == torch.float16 else None
    order_gen = generator(recipe.seed)

    weights = Path(output) if output else recipe.base_dir / recipe.output
    ckpt_path = Path(checkpoint) if checkpoint else ckpt.default_path(weights)
    fingerprint = ckpt.recipe_fingerprint(recipe.dump())
    data_hash = hashlib.sha256(train_set.images.numpy().tobytes()
                               + train_set.labels.numpy().tobytes()).hexdigest()
    out_identity = out_source.identity() if out_source is not None else None
    ident = out_identity or {}
    out_hash = ident.get("images_sha256") or ident.get("fingerprint_sha256")
    if out_hash:  # the out-distribution in memory, or the fingerprint of a file read per step
        data_hash = hashlib.sha256((data_hash + out_hash).encode()).hexdigest()

    start_epoch, step, history, elapsed_before = 0, 0, [], 0.0
    if resume is not False and ckpt_path.exists():
        state = ckpt.load_checkpoint(ckpt_path)
        if state["fingerprint"] != fingerprint or state["data_sha256"] != data_hash:
            raise RecipeError(
                f"checkpoint {ckpt_path} was written for another recipe or other data than "
                f"{recipe.name!r}; start over with --restart (resume=False) or delete it")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        ckpt.load_scheduler_state(sched, state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        ckpt.load_rng_state(state["rng"], order_gen)
        start_epoch, step = int(state["epoch"]), int(state["step"])
        history, elapsed_before = list(state["history"]), float(state["elapsed_s"])
    elif resume is True:
        raise MissingFileError(f"no checkpoint to resume from at {ckpt_path}")

    if stop_after is not None and start_epoch >= stop_after and start_epoch < recipe.epochs:
        return {"status": "stopped", "name": recipe.name, "epoch": start_epoch, "step": step,
                "checkpoint": str(ckpt_path), "history": history}
    lam = method.lam
    autocast = (lambda: torch.autocast(dev.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
    augmenting = recipe.augment.enabled
    bar = tqdm(total=recipe.epochs * steps_per_epoch, initial=step, disable=not progress,
               desc=f"train {recipe.name} ({recipe.method})", unit="step")
    for epoch in range(start_epoch, recipe.epochs):
        model.train()
        order = torch.randperm(n, generator=order_gen)
        stats = _EpochStats()
        for start in range(0, n, bsz):
            idx = order[start:start + bsz]
            if recipe.drop_last and len(idx) < bsz:
                break
            x, y = train_set.images[idx], train_set.labels[idx]
            if augmenting:
                x = augment(x, recipe.augment, generator(step_seed(recipe.seed, step, "augment")))
            x_out = None
            if out_source is not None:
                m = math.ceil(lam * len(x) - 1e-9)
                x_out = out_source.sample(x, m, step_seed(recipe.seed, step, "out")).to(dev)
            batch = Batch(x.to(dev), y.to(dev), x_out,
                          progress=step / (recipe.epochs * steps_per_epoch))
            counter = step if per_step else epoch
            lr_drops = sum(1 for point in milestones if 0 < point <= counter)
            lr = opt.param_groups[0]["lr"]  # the learning rate of this step
            opt.zero_grad(set_to_none=True)
            with autocast():
                result = method.loss(model, batch, lr_drops=lr_drops,
                                     seed=step_seed(recipe.seed, step, "attack"))
            if scaler is not None:
                scaler.scale(result.loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                result.loss.backward()
                opt.step()
            step += 1
            if per_step:
                sched.step()
            correct = (result.logits_in.argmax(1) == batch.y_in).sum()
            stats.add(len(idx), correct, result.loss, result.parts)
            bar.update(1)
            if progress and (step % 20 == 0 or start + bsz >= n):
                means = stats.means()
                bar.set_postfix(epoch=epoch + 1, loss=f"{means['loss']:.3f}",
                                acc=f"{means['accuracy']:.3f}")
        if not per_step:
            sched.step()
        # lr: the learning rate of the epoch's last step
        history.append({"epoch": epoch + 1, "step": step, "lr": lr, **stats.means()})
        elapsed = elapsed_before + time.perf_counter() - t_start
        ckpt.save_checkpoint(ckpt_path, {
            "fingerprint": fingerprint, "data_sha256": data_hash, "epoch": epoch + 1,
            "step": step, "model": net.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": ckpt.scheduler_state(sched),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": ckpt.rng_state(order_gen), "history": history, "elapsed_s": elapsed})
        if stop_after is not None and epoch + 1 >= stop_after and epoch + 1 < recipe.epochs:
            bar.close()
            return {"status": "stopped", "name": recipe.name, "epoch": epoch + 1, "step": step,
                    "checkpoint": str(ckpt_path), "history": history}
    bar.close()

    metrics = evaluate_model(model, recipe, test_set, device=dev, root=root, progress=progress)
    if history:
        metrics.update({f"train_{k}": v for k, v in history[-1].items()
                        if k not in ("epoch", "step", "lr")})
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(weights))
    elapsed = elapsed_before + time.perf_counter() - t_start
    card = _card(recipe, weights, method, out_identity, train_set, metrics, history, step,
                 milestones, dev, amp_dtype, elapsed, steps_per_epoch)
    weights.with_suffix(".yaml").write_text(yaml.safe_dump(card, sort_keys=False, allow_unicode=True))
    if not keep_checkpoint and ckpt_path.exists():
        ckpt_path.unlink()
    return {**card, "status": "complete", "weights": str(weights)}


def _card(recipe: Recipe, weights: Path, method: Method, out_identity: Optional[dict],
          train_set: ImageSet, metrics: dict[str, float], history: list[dict], steps: int,
          milestones: list[int], dev: torch.device, amp_dtype: Optional[torch.dtype],
          elapsed: float, steps_per_epoch: int) -> dict[str, Any]:
    dump = recipe.dump()
    bsz = recipe.batch_size
    training: dict[str, Any] = {
        "method": recipe.method,
        "paper": trainers.meta(recipe.method).get("paper"),
        "lambda": method.lam if method.needs_out else None,
        "out_distribution": out_identity,
        "out_loss": method.out_loss,
        "batch": {"in": bsz, "out": math.ceil(method.lam * bsz - 1e-9) if method.needs_out else 0},
        "in_attack": dump["in_attack"],
        "out_attack": dump["out_attack"],
        "optimizer": {"name": recipe.optimizer, "lr": recipe.lr, "weight_decay": recipe.weight_decay,
                      **({"momentum": recipe.momentum, "nesterov": recipe.nesterov}
                         if recipe.optimizer == "sgd" else {})},
        "lr_milestones": {"per": "step" if recipe.schedule.per == "step"
                          and recipe.schedule.epochs is None else "epoch",
                          "at": milestones, "gamma": recipe.schedule.gamma},
        "augment": dump["augment"],
        "epochs": recipe.epochs,
        "steps": steps,
        "steps_per_epoch": steps_per_epoch,
    }
    card: dict[str, Any] = {
        "name": recipe.name,
        "arch": recipe.arch,
        "arch_options": recipe.arch_options,
    }
    if recipe.normalize is not None:
        card["normalize"] = recipe.normalize.model_dump()
    assert train_set.labels is not None
    card.update({
        "weights": weights.name,
        "sha256": _file_sha256(weights),
        "method": recipe.method,
        "training": training,
        "recipe": dump,
        "data": {**recipe.dataset.identity(), "train_images_sha256":
                 hashlib.sha256(train_set.images.numpy().tobytes()).hexdigest(),
                 "train_size": len(train_set)},
        "metrics": metrics,
        "history": history,
        "trained_with": {"oodbench": VERSION, "torch": str(torch.__version__),
                         "device": str(dev), "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else None,
                         "wall_time_s": round(elapsed, 1),
                         "date": datetime.now(timezone.utc).date().isoformat()},
    })
    return card
