"""Registered architectures, one module per family in a fixed layout (cf. timm): the module
class, a private ``_create_*`` builder, an ``_INFO`` metadata table (:class:`ArchInfo`), and
thin registered functions ``build(num_classes=10, **options) -> nn.Module``. The
``architectures`` registry imports every module here on its first lookup: a new family is one file.

Every network returns logits and expects inputs in [0, 1] *after* the normalisation that
``load_model`` puts in front of it; none normalises internally.
"""

from oodbench.models.architectures._meta import ArchInfo

__all__ = ["ArchInfo"]
