"""Report formats: how a stored run's table (or its long metric table) is written out.

Each format is one module here with a :class:`~oodbench.report.formats.base.Format` subclass
registered in the ``formats`` family (``oodbench list formats``; the registry imports every
module of this folder on its first lookup, so a new format is one file): ``latex`` (booktabs),
``html`` (a self-contained page that can link the run's figures), ``md`` (GitHub Markdown) and
``csv`` (the long metric table; the layout does not apply).
"""

from oodbench.report.formats.base import Content, Format, TemplateFormat

__all__ = ["Content", "Format", "TemplateFormat"]
