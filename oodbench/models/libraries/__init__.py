"""Adapters for networks from other libraries, one file each: ``timm``, ``huggingface``,
``torch-export``. Each puts its library's input preprocessing (resize, crop, normalisation from
the model's own config) in front of the network, so it takes [0, 1] images of any size.
The libraries themselves are optional extras, imported only when an entry names the adapter.
"""

from oodbench.models.libraries import (huggingface_models, timm_models,  # noqa: F401  (registers)
                                       torch_export_models)
