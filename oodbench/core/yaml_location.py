"""Where in a YAML file a field stands, so that an error names ``FILE:LINE: field `a.b[0]```.

Suites, recipes and model cards are all checked by pydantic against a YAML file read with its
node tree (:func:`oodbench.core.validation.read_yaml`); these two helpers turn pydantic's error
location into the line of the node and the field's name as the user wrote it.
"""

from __future__ import annotations

from typing import Any, Optional

import yaml


def node_line(node: Optional[yaml.Node], loc: tuple[Any, ...]) -> Optional[int]:
    """1-based line of the YAML node at ``loc`` (or of its nearest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value in (key, str(key))), None)
            if child is None:  # unknown/missing key: point at the key itself or the mapping
                key_node = next((k for k, _ in node.value if k.value in (key, str(key))), None)
                return key_node.start_mark.line + 1 if key_node is not None else line
            node = child
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
        line = node.start_mark.line + 1
    return line


def format_loc(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as a field path: ``('models', 0, 'arch')`` -> ``models[0].arch``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


__all__ = ["format_loc", "node_line"]
