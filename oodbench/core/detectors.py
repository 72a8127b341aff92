"""The detector every stage falls back to when none is named."""

from __future__ import annotations

DEFAULT_DETECTOR = "msp"
"""The benchmark's score since its first release, and the detector of every metric stored
before detectors existed."""

__all__ = ["DEFAULT_DETECTOR"]
