"""Plain cross-entropy training: the baseline every method of the papers is compared with.

Writes weights as safetensors (loading them never executes code) and a model card in the
``model_zoo/`` format next to them: architecture, recipe, data hash, sha256 of the weights and
the final test error, so a checkpoint can always be traced back to how it was made.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Union

import torch
import yaml
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

import oodbench
from oodbench.data import DataRequest, load_dataset
from oodbench.metrics import test_error
from oodbench.registry import architectures
from oodbench.runner import forward_logits, resolve_device
from oodbench.suite import DATA_ROOT_ENV, DEFAULT_DATA_ROOT
from oodbench.train.recipe import Recipe


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _data_root(recipe: Recipe, override: Union[str, Path, None]) -> Path:
    import os

    if override is not None:
        return Path(override).expanduser()
    if os.environ.get(DATA_ROOT_ENV):
        return Path(os.environ[DATA_ROOT_ENV]).expanduser()
    if recipe.data_root:
        return (recipe.base_dir / Path(recipe.data_root).expanduser())
    return DEFAULT_DATA_ROOT.expanduser()


def train_from_recipe(recipe: Recipe, *, device: Optional[str] = None,
                      output: Union[str, Path, None] = None,
                      data_root: Union[str, Path, None] = None, progress: bool = True) -> dict[str, Any]:
    """Train ``recipe``'s model, save weights + card, return the card as a dict."""
    dev = resolve_device(device or recipe.device)
    root = _data_root(recipe, data_root)
    spec = recipe.dataset
    train_set = load_dataset(spec.dataset, DataRequest(root=root, split="train", download=True,
                                                       n=spec.n, seed=recipe.seed, options=spec.options))
    test_set = load_dataset(spec.dataset, DataRequest(root=root, split="test", download=True,
                                                      options=spec.options))
    assert train_set.labels is not None and test_set.labels is not None

    torch.manual_seed(recipe.seed)
    model: nn.Module = architectures.get(recipe.arch)(**recipe.arch_options).to(dev)
    if recipe.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr,
                                                      weight_decay=recipe.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                              weight_decay=recipe.weight_decay, nesterov=True)
    # ÷10 at 50%, 75% and 90% of training, the schedule of Hein et al. (2019).
    milestones = [int(recipe.epochs * f) for f in (0.5, 0.75, 0.9)]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
    gen = torch.Generator().manual_seed(recipe.seed)
    loss_fn = nn.CrossEntropyLoss()

    bar = tqdm(range(recipe.epochs), desc=f"train {recipe.name}", disable=not progress)
    for _ in bar:
        model.train()
        order = torch.randperm(len(train_set), generator=gen)
        for start in range(0, len(order), recipe.batch_size):
            idx = order[start:start + recipe.batch_size]
            x, y = train_set.images[idx].to(dev), train_set.labels[idx].to(dev)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")

    model.eval()
    logits = forward_logits(model, test_set.images, device=dev)
    err = test_error(test_set.labels.numpy(), logits.argmax(1))

    weights = Path(output) if output else recipe.base_dir / recipe.output
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(weights))
    card = {
        "name": recipe.name,
        "arch": recipe.arch,
        "arch_options": recipe.arch_options,
        "weights": weights.name,
        "sha256": _file_sha256(weights),
        "recipe": recipe.model_dump(mode="json"),
        "data": {**spec.identity(), "train_images_sha256":
                 hashlib.sha256(train_set.images.numpy().tobytes()).hexdigest()},
        "metrics": {"test_error": round(float(err), 6)},
        "trained_with": {"oodbench": oodbench.__version__, "torch": str(torch.__version__),
                         "device": str(dev),
                         "date": datetime.now(timezone.utc).date().isoformat()},
    }
    weights.with_suffix(".yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    return {**card, "weights": str(weights)}
