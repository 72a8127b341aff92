"""Certified bounds: interval bound propagation (IBP) through a model, and upper bounds of the
detectors' scores over a threat ball computed from the propagated boxes.

An attack finds *some* point of the ball with a high score (a lower bound of the worst case);
these bounds hold for *every* point of the ball (an upper bound of it). Between them lies the
true worst case: the bracket that :mod:`oodbench.pipeline.score.bracket` checks on every table.
"""

from oodbench.bounds.ibp import Box, UnsupportedLayerError, input_box, propagate
from oodbench.bounds.outputs import (OutputBounds, energy_upper, head_bounds, max_logit_upper,
                                     msp_upper, output_bounds, widened)

__all__ = ["Box", "UnsupportedLayerError", "input_box", "propagate", "OutputBounds",
           "output_bounds", "head_bounds", "msp_upper", "energy_upper", "max_logit_upper", "widened"]
