"""The package's version, recorded in every job key and in provenance (``pyproject.toml``
carries the same string)."""

VERSION = "0.1.0"
