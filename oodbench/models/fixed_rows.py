"""Model calls of one fixed shape, so a point's outputs depend on the point alone.

Matrix-multiply and convolution kernels pick their blocking, and so their rounding, by the number
of rows, so a point's logits would otherwise depend on how many points share its batch. Every
model call of oodbench — a clean or probe pass, every attack step — therefore has exactly
:data:`FORWARD_ROWS` rows, the last chunk padded with copies of its first row: batch size,
sharding and early stops then leave each point's results bit for bit the same (on one device and
software stack).
"""

from __future__ import annotations

from typing import Iterator, Optional

import torch

FORWARD_ROWS = 128


def padded(x: torch.Tensor, target: Optional[torch.Tensor] = None,
           rows: int = FORWARD_ROWS) -> tuple[torch.Tensor, Optional[torch.Tensor], int]:
    """``x`` (and ``target``) padded to ``rows`` rows with copies of the first row, and how many
    rows are real: the caller keeps the first ``n`` outputs."""
    n = len(x)
    if n < rows:
        x = torch.cat([x, x[:1].expand(rows - n, *x.shape[1:])])
        if target is not None:
            target = torch.cat([target, target[:1].expand(rows - n)])
    return x, target, n


def chunks(x: torch.Tensor, rows: int = FORWARD_ROWS) -> Iterator[tuple[torch.Tensor, int]]:
    """``x`` in padded chunks of ``rows`` rows: ``(chunk, number of real rows)``."""
    for i in range(0, len(x), rows):
        part, _, n = padded(x[i:i + rows], rows=rows)
        yield part, n
