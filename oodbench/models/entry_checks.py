"""What a model entry is refused for before anything is loaded (``oodbench validate``).

A missing ``path`` or an architecture option the builder does not take used to surface only
when the run reached the model — after the cached jobs, or minutes into a fresh run. Both checks
here are driven by what each component declares, so a new adapter or architecture is checked
without an edit: an adapter's ``required`` fields (its registry entry), and an architecture's
own builder, called on PyTorch's meta device, where a module has shapes but no memory or values.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from oodbench.models.spec import ModelSpec
from oodbench.core.registry import architectures, models


def missing_model_field(spec: ModelSpec) -> Optional[tuple[str, str]]:
    """(field, message) for the first field the entry's adapter declares ``required`` that is
    unset (for a flag such as ``trust_code``: not true; for a tuple of alternatives: all of
    them), else None. An adapter may list fields a
    trusted entry can leave out (``trusted_without``: a trusted pickle holds the whole module,
    so it needs no ``arch``)."""
    if spec.adapter not in models:
        return None
    meta = models.meta(spec.adapter)
    waived = set(meta.get("trusted_without", ())) if spec.trust_code else set()
    for field in meta.get("required", ()):
        if isinstance(field, tuple):  # alternatives: any one of them will do
            if not any(getattr(spec, f, None) not in (None, "") for f in field):
                return field[0], (f"adapter {spec.adapter!r} needs "
                                  f"{' or '.join(f'`{f}`' for f in field)}")
            continue
        value = getattr(spec, field, None)
        if field in waived or value not in (None, "", False):
            continue
        if value is False:
            return field, f"adapter {spec.adapter!r} needs `{field}: true`"
        return field, (f"adapter {spec.adapter!r} needs `{field}` (`oodbench list models` shows "
                       "the fields of each adapter)")
    return None


def arch_options_problem(spec: ModelSpec) -> Optional[tuple[tuple[Any, ...], str]]:
    """(location under ``arch_options``, message) if ``spec.arch`` would refuse
    ``spec.arch_options``, else None.

    Every registered builder takes ``num_classes`` (the architectures' contract), and a model
    with no outputs is no classifier, so it must be a positive integer. The rest is the
    builder's own judgement (an unknown keyword, an odd ``image_size``): it is called on the
    meta device, and a ``TypeError``/``ValueError`` is its refusal. A builder that cannot run
    on the meta device (it reads tensor values) is left to the load, where it is checked anyway.
    """
    if spec.arch is None or spec.arch not in architectures:
        return None
    options = spec.arch_options
    n = options.get("num_classes", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        return ("num_classes",), (f"`num_classes` must be a positive integer (the number of "
                                  f"classes the model outputs), got {n!r}")
    try:
        with torch.device("meta"):
            architectures.get(spec.arch)(**options)
    except (TypeError, ValueError) as err:
        return (), (f"architecture {spec.arch!r} refuses these options ({err}); use the options "
                    "its builder takes (`oodbench list architectures`)")
    except Exception:  # noqa: BLE001  (not a refusal: the builder needs real tensors)
        return None
    return None


__all__ = ["missing_model_field", "arch_options_problem"]
