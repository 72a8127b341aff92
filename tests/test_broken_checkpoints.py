"""Broken checkpoint files, written in their real formats (torch.save zip, safetensors, raw
bytes), each refused by ``load_model`` with a :class:`ModelLoadError` naming the model and the
file and saying what the file is — never blaming ``trust_code`` for a file that is not a
checkpoint at all (issue 14 defect 9)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import save_file

from oodbench.core.errors import OodbenchError
from oodbench.models import ModelLoadError, load_model
from oodbench.core.registry import architectures

HTML = (b"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head>"
        b"<body>Google Drive can't scan this file for viruses.</body></html>")


def _state(num_classes: int = 5) -> dict[str, torch.Tensor]:
    return architectures.get("digits-net")(num_classes=num_classes).state_dict()


def _torch_save(path: Path, obj: object) -> None:
    torch.save(obj, path)


def _truncated_zip(path: Path) -> None:
    torch.save(_state(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _safetensors_cast(dtype: torch.dtype) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        save_file({k: v.to(dtype).contiguous() for k, v in _state().items()}, str(path))
    return write


def _with_fc2(change: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
    """The digits-net state with one weight replaced (a meta or sparse tensor: issue 20 item 5,
    which crashed ``load_state_dict`` with a bare RuntimeError)."""
    state = _state()
    return {**state, "fc2.weight": change(state["fc2.weight"])}


def _wrong_keys(path: Path) -> None:
    torch.save({"encoder.weight": torch.zeros(3, 3)}, path)


def _wrong_shapes(path: Path) -> None:
    torch.save(_state(num_classes=7), path)


def _pickled_module(path: Path) -> None:
    torch.save(architectures.get("digits-net")(num_classes=5), path)


# (case, suffix, writer, adapter, words the message must contain)
CASES: list[tuple[str, str, Callable[[Path], None], str, str]] = [
    ("html page", ".pt", lambda p: p.write_bytes(HTML), "checkpoint", "is an HTML page"),
    ("html page as safetensors", ".safetensors", lambda p: p.write_bytes(HTML), "safetensors",
     "is an HTML page"),
    ("random bytes", ".pt", lambda p: p.write_bytes(bytes(range(7, 256)) * 40), "checkpoint",
     "is not a PyTorch checkpoint"),
    ("random bytes as safetensors", ".safetensors", lambda p: p.write_bytes(os.urandom(4096)),
     "safetensors", "is not a safetensors file"),
    ("empty file", ".pt", lambda p: p.write_bytes(b""), "checkpoint", "is empty (0 bytes)"),
    ("empty safetensors", ".safetensors", lambda p: p.write_bytes(b""), "safetensors",
     "is empty (0 bytes)"),
    ("truncated zip", ".pt", _truncated_zip, "checkpoint", "truncated or damaged zip archive"),
    ("safetensors of int32", ".safetensors", _safetensors_cast(torch.int32), "safetensors",
     "integer or boolean tensor(s)"),
    ("safetensors of bool", ".safetensors", _safetensors_cast(torch.bool), "safetensors",
     "integer or boolean tensor(s)"),
    ("torch.save of int64", ".pt", lambda p: torch.save({k: v.long() for k, v in _state().items()}, p),
     "checkpoint", "integer or boolean tensor(s)"),
    ("torch.save of complex64", ".pt",
     lambda p: torch.save({k: v.to(torch.complex64) for k, v in _state().items()}, p),
     "checkpoint", "complex tensor(s)"),
    ("safetensors of complex64", ".safetensors", _safetensors_cast(torch.complex64), "safetensors",
     "complex tensor(s)"),
    ("meta tensors", ".pt", lambda p: torch.save(_with_fc2(lambda t: torch.empty(t.shape, device="meta")), p),
     "checkpoint", "fc2.weight (meta: a shape without values)"),
    ("sparse tensors", ".pt", lambda p: torch.save(_with_fc2(lambda t: t.to_sparse()), p),
     "checkpoint", "fc2.weight (sparse_coo)"),
    ("wrong keys", ".pt", _wrong_keys, "checkpoint", "missing keys"),
    ("wrong shapes", ".pt", _wrong_shapes, "checkpoint", "shape mismatches"),
    ("pickle needing code", ".pt", _pickled_module, "checkpoint", "needs code to unpickle"),
    ("safetensors given to the checkpoint adapter", ".pt",
     lambda p: save_file(_state(), str(p)), "checkpoint", "is a safetensors file"),
    ("torch.save given to the safetensors adapter", ".safetensors",
     lambda p: torch.save(_state(), p), "safetensors", "is a torch.save checkpoint"),
]


@pytest.mark.parametrize("case,suffix,write,adapter,words", CASES, ids=[c[0] for c in CASES])
def test_broken_checkpoint_is_refused_naming_the_file(tmp_path, case, suffix, write, adapter, words):
    path = tmp_path / f"weights{suffix}"
    write(path)
    with pytest.raises(ModelLoadError) as err:
        load_model({"name": "broken", "adapter": adapter, "arch": "digits-net",
                    "arch_options": {"num_classes": 5}, "path": str(path)})
    msg = str(err.value)
    assert isinstance(err.value, OodbenchError)
    assert "model 'broken'" in msg and str(path) in msg
    assert words in msg, msg
    if case != "pickle needing code":  # only a real pickle may mention trust_code
        assert "trust_code" not in msg, msg


def test_a_sound_checkpoint_of_each_format_loads(tmp_path):
    """The sniffing refuses broken files only: both writers' real output loads."""
    torch.save(_state(), tmp_path / "w.pt")
    save_file(_state(), str(tmp_path / "w.safetensors"))
    for adapter, name in (("checkpoint", "w.pt"), ("safetensors", "w.safetensors")):
        net = load_model({"name": "ok", "adapter": adapter, "arch": "digits-net",
                          "arch_options": {"num_classes": 5}, "path": str(tmp_path / name)})
        assert net(torch.zeros(2, 1, 8, 8)).shape == (2, 5)
