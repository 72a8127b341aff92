"""Training: recipes (YAML) and the loops that turn them into model-zoo checkpoints."""

from oodbench.train.plain import train_from_recipe
from oodbench.train.recipe import Recipe, load_recipe

__all__ = ["Recipe", "load_recipe", "train_from_recipe"]
