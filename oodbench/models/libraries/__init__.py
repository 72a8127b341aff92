"""Adapters for networks from other libraries, one file each: ``timm``, ``huggingface``,
``torch-export``. Each puts its library's input preprocessing (resize, crop, normalisation from
the model's own config) in front of the network, so it takes [0, 1] images of any size.
The libraries themselves are optional extras, imported only when an entry names the adapter
(the ``models`` registry imports every module here on its first lookup).
"""
