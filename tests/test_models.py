"""Architectures, adapters, normalisation and fingerprints of ``oodbench.models``."""

from __future__ import annotations

import importlib.util
import socket
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from oodbench.models import (
    ModelLoadError,
    ModelSpec,
    Normalize,
    load_model,
    model_fingerprint,
    with_normalization,
)
from oodbench.models.adapters import ensure_autoattack, robustbench_file
from oodbench.core.registry import architectures, models

SLOW_ARCHS: set[str] = set()  # names taking > 3 s for build + forward + round trip on 2 CPUs


def _arch_params() -> list:
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_ARCHS else n
            for n in architectures.names()]


def _save(obj, path: Path) -> Path:
    torch.save(obj, path)
    return path


def _small_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return architectures.get("digits-net")().eval()


def _x(shape=(1, 8, 8), n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------
# architectures


@pytest.mark.parametrize("name", _arch_params())
def test_architecture_builds_forwards_and_round_trips(name: str) -> None:
    meta = architectures.meta(name)
    assert {"input_shape", "paper", "source", "version"} <= set(meta)
    assert architectures.entry(name).doc, "the builder needs a one-line docstring"
    torch.manual_seed(0)
    net = architectures.get(name)(num_classes=7).eval()
    x = torch.rand(2, *meta["input_shape"])
    with torch.no_grad():
        out = net(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    torch.manual_seed(1)
    clone = architectures.get(name)(num_classes=7).eval()
    clone.load_state_dict(net.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(clone(x), out)


def test_architectures_do_not_normalise_internally() -> None:
    # a pure ReLU net without biases is positively homogeneous; normalisation would break that
    net = architectures.get("lenet")().eval()
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.zeros_(m.bias)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(net(3 * x), 3 * net(x), rtol=1e-4, atol=1e-5)


def test_lenet_layout_matches_the_papers() -> None:
    net = architectures.get("lenet")()
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes == {
        "conv1.weight": (32, 1, 5, 5), "conv1.bias": (32,),
        "conv2.weight": (64, 32, 5, 5), "conv2.bias": (64,),
        "fc1.weight": (1024, 64 * 7 * 7), "fc1.bias": (1024,),
        "fc2.weight": (10, 1024), "fc2.bias": (10,),
    }
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())


def _kuangliu_resnet18_state(num_classes: int = 10) -> dict[str, torch.Tensor]:
    """A state dict written from the published CIFAR ResNet-18 layout, independently of the
    module: literal key names and shapes."""
    g = torch.Generator().manual_seed(0)

    def bn(prefix: str, c: int) -> dict[str, torch.Tensor]:
        return {f"{prefix}.weight": torch.rand(c, generator=g) + 0.5,
                f"{prefix}.bias": torch.randn(c, generator=g) * 0.1,
                f"{prefix}.running_mean": torch.randn(c, generator=g) * 0.1,
                f"{prefix}.running_var": torch.rand(c, generator=g) + 0.5,
                f"{prefix}.num_batches_tracked": torch.tensor(100)}

    def conv(cout: int, cin: int, k: int) -> torch.Tensor:
        return torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5

    sd = {"conv1.weight": conv(64, 3, 3), **bn("bn1", 64)}
    in_planes = 64
    for layer, planes in enumerate((64, 128, 256, 512), start=1):
        for block in (0, 1):
            p = f"layer{layer}.{block}"
            cin = in_planes if block == 0 else planes
            sd[f"{p}.conv1.weight"] = conv(planes, cin, 3)
            sd.update(bn(f"{p}.bn1", planes))
            sd[f"{p}.conv2.weight"] = conv(planes, planes, 3)
            sd.update(bn(f"{p}.bn2", planes))
            if block == 0 and layer > 1:
                sd[f"{p}.shortcut.0.weight"] = conv(planes, cin, 1)
                sd.update(bn(f"{p}.shortcut.1", planes))
        in_planes = planes
    sd["linear.weight"] = torch.randn(num_classes, 512, generator=g) * 0.05
    sd["linear.bias"] = torch.zeros(num_classes)
    return sd


def test_resnet18_has_the_published_cifar_key_names(tmp_path: Path) -> None:
    keys = list(architectures.get("resnet18")().state_dict())
    assert len(keys) == 122
    for key in ("conv1.weight", "bn1.weight", "bn1.running_var", "layer1.0.conv1.weight",
                "layer1.0.bn1.bias", "layer1.1.conv2.weight", "layer2.0.shortcut.0.weight",
                "layer2.0.shortcut.1.running_mean", "layer4.1.bn2.num_batches_tracked",
                "linear.weight", "linear.bias"):
        assert key in keys
    assert "layer1.0.shortcut.0.weight" not in keys  # identity shortcut: no parameters

    state = _kuangliu_resnet18_state()
    assert len(state) == 122
    path = _save(state, tmp_path / "ckpt.pth")
    net = load_model({"name": "r18", "arch": "resnet18", "path": str(path)})
    loaded = net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    with torch.no_grad():
        assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_resnet50_bottleneck_key_names() -> None:
    keys = set(architectures.get("resnet50")().state_dict())
    assert len(keys) == 320
    assert {"layer1.0.conv3.weight", "layer1.0.bn3.running_var", "layer1.0.shortcut.0.weight",
            "layer3.5.conv1.weight", "layer4.2.bn3.bias", "linear.weight"} <= keys
    assert "layer1.1.shortcut.0.weight" not in keys


def test_wide_resnet_has_robustbench_key_names() -> None:
    keys = set(architectures.get("wrn-28-10")(depth=10, widen_factor=2, sub_block1=True)
               .state_dict())
    assert {"conv1.weight", "block1.layer.0.bn1.weight", "block1.layer.0.conv1.weight",
            "block1.layer.0.bn2.running_var", "block1.layer.0.convShortcut.weight",
            "sub_block1.layer.0.conv2.weight", "block3.layer.0.convShortcut.weight",
            "bn1.running_mean", "fc.weight", "fc.bias"} <= keys
    # widen_factor=1: the first group keeps 16 channels, so no 1×1 shortcut there
    keys1 = set(architectures.get("wrn-28-10")(depth=10, widen_factor=1).state_dict())
    assert "block1.layer.0.convShortcut.weight" not in keys1
    assert "block2.layer.0.convShortcut.weight" in keys1
    assert len(architectures.get("wrn-28-10")(depth=28, widen_factor=1).state_dict()) == 154
    with pytest.raises(ValueError, match="6n\\+4"):
        architectures.get("wrn-28-10")(depth=27)


@pytest.mark.slow
def test_architectures_match_robustbench_implementations() -> None:
    ensure_autoattack()
    from robustbench.model_zoo.architectures.resnet import ResNet18, ResNet50
    from robustbench.model_zoo.architectures.wide_resnet import WideResNet

    torch.manual_seed(0)
    cases = [("resnet18", {}, ResNet18()), ("resnet50", {}, ResNet50()),
             ("wrn-28-10", {"depth": 16, "widen_factor": 2, "sub_block1": True},
              WideResNet(depth=16, widen_factor=2, sub_block1=True)),
             ("wrn-28-10", {"depth": 10, "widen_factor": 1}, WideResNet(depth=10, widen_factor=1))]
    x = torch.rand(3, 3, 32, 32)
    for name, options, theirs in cases:
        state = theirs.state_dict()
        for k, v in state.items():  # non-trivial BN statistics
            if "running_var" in k:
                v.copy_(torch.rand_like(v) + 0.5)
            elif "running_mean" in k:
                v.copy_(torch.randn_like(v) * 0.1)
        theirs.load_state_dict(state)
        ours = architectures.get(name)(**options)
        assert list(ours.state_dict()) == list(state)
        ours.load_state_dict(state, strict=True)
        with torch.no_grad():
            torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # ~1 s of training, but importing scikit-learn and a loaded machine add more
def test_digits_net_trains_above_95_percent_quickly() -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, test = perm[:1400], perm[1400:]
    torch.manual_seed(0)
    net = architectures.get("digits-net")()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(8):  # about a second on 2 CPU cores
        for idx in train.split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    with torch.no_grad():
        acc = (net.eval()(x[test]).argmax(1) == y[test]).float().mean().item()
    assert acc > 0.95


# ------------------------------------------------------------------------------------------
# checkpoint adapter


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model_state_dict", "model", "net",
                                  "module-prefix", "wrapped-module-prefix"])
def test_checkpoint_adapter_accepts_common_wrappers(tmp_path: Path, wrap: str) -> None:
    net = _small_net()
    state = net.state_dict()
    prefixed = {f"module.{k}": v for k, v in state.items()}
    obj = {"plain": state, "module-prefix": prefixed,
           "wrapped-module-prefix": {"state_dict": prefixed, "epoch": 3, "acc": 0.9}
           }.get(wrap, {wrap: state, "epoch": 7, "optimizer": {"lr": 0.1}})
    path = _save(obj, tmp_path / "ckpt.pt")
    loaded = load_model({"name": "m", "adapter": "checkpoint", "arch": "digits-net",
                         "path": "ckpt.pt"}, base_dir=tmp_path)
    x = _x()
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    assert path.exists()


def test_checkpoint_relative_path_and_tilde(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net = _small_net()
    (tmp_path / "sub").mkdir()
    _save(net.state_dict(), tmp_path / "sub" / "w.pt")
    monkeypatch.setenv("HOME", str(tmp_path))
    for ref, base in (({"path": "sub/w.pt"}, tmp_path), ({"path": "~/sub/w.pt"}, "/nonexistent")):
        loaded = load_model({"name": "m", "arch": "digits-net", **ref}, base_dir=base)
        with torch.no_grad():
            assert torch.equal(loaded(_x()), net(_x()))


def test_pickled_module_is_refused_without_trust_code_and_loads_with_it(tmp_path: Path) -> None:
    net = _small_net()
    path = _save(net, tmp_path / "whole.pt")  # a whole module: unpickling runs class code
    spec = {"name": "pickled", "arch": "digits-net", "path": str(path)}
    with pytest.raises(ModelLoadError) as err:
        load_model(spec)
    msg = str(err.value)
    assert "'pickled'" in msg and "needs code to unpickle" in msg and "executes code" in msg
    assert "trust_code: true" in msg and "DigitsNet" in msg
    assert err.value.field == "trust_code"
    loaded = load_model({**spec, "trust_code": True})
    with torch.no_grad():
        assert torch.equal(loaded(_x()), net(_x()))
    # no arch is needed when the pickle holds the module itself, also inside a wrapper dict
    _save({"model": net, "epoch": 1}, tmp_path / "wrapped.pt")
    loaded = load_model({"name": "p", "path": str(tmp_path / "wrapped.pt"), "trust_code": True})
    with torch.no_grad():
        assert torch.equal(loaded(_x()), net(_x()))


def test_corrupt_checkpoint_error(tmp_path: Path) -> None:
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelLoadError, match="'bad'"):
        load_model({"name": "bad", "arch": "digits-net", "path": str(tmp_path / "bad.pt")})


def test_state_dict_needs_arch(tmp_path: Path) -> None:
    path = _save(_small_net().state_dict(), tmp_path / "w.pt")
    with pytest.raises(ModelLoadError, match="field `arch`") as err:
        load_model({"name": "noarch", "path": str(path)})
    assert "'noarch'" in str(err.value) and "oodbench list architectures" in str(err.value)
    with pytest.raises(ModelLoadError, match="field `arch`.*Did you mean 'digits-net'"):
        load_model({"name": "typo", "path": str(path), "arch": "digit-net"})
    with pytest.raises(ModelLoadError, match="field `arch_options`"):
        load_model({"name": "opts", "path": str(path), "arch": "digits-net",
                    "arch_options": {"no_such_option": 1}})


def test_mismatched_keys_are_listed_with_the_arch(tmp_path: Path) -> None:
    state = _small_net().state_dict()
    state["extra.weight"] = torch.zeros(3)
    del state["fc2.bias"]
    path = _save(state, tmp_path / "w.pt")
    with pytest.raises(ModelLoadError) as err:
        load_model({"name": "mm", "arch": "digits-net", "path": str(path)})
    msg = str(err.value)
    assert "'mm'" in msg and "'digits-net'" in msg
    assert "missing keys (fc2.bias)" in msg and "unexpected keys (extra.weight)" in msg
    path = _save(_small_net().state_dict(), tmp_path / "w10.pt")
    with pytest.raises(ModelLoadError, match="shape mismatch.*num_classes"):
        load_model({"name": "mm", "arch": "digits-net", "path": str(path),
                    "arch_options": {"num_classes": 5}})


def test_old_checkpoints_without_num_batches_tracked_load(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = architectures.get("wrn-28-10")(depth=10, widen_factor=1).eval()
    state = {k: v for k, v in net.state_dict().items() if "num_batches_tracked" not in k}
    path = _save(state, tmp_path / "old.pt")
    loaded = load_model({"name": "old", "arch": "wrn-28-10", "path": str(path),
                         "arch_options": {"depth": 10, "widen_factor": 1}})
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))


# ------------------------------------------------------------------------------------------
# files: missing, sha256, download


def test_missing_file_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as err:
        load_model({"name": "gone", "arch": "digits-net", "path": "nope/w.pt"}, base_dir=tmp_path)
    msg = str(err.value)
    assert "'gone'" in msg and "field `path`" in msg and str(tmp_path / "nope" / "w.pt") in msg
    assert "url" in msg
    assert err.value.model == "gone" and err.value.field == "path"
    with pytest.raises(ModelLoadError, match="field `path`"):
        load_model({"name": "nopath", "adapter": "torchscript"})


def test_sha256_is_verified(tmp_path: Path) -> None:
    from oodbench.models import file_sha256

    path = _save(_small_net().state_dict(), tmp_path / "w.pt")
    good = file_sha256(path)
    spec = {"name": "pinned", "arch": "digits-net", "path": str(path)}
    load_model({**spec, "sha256": good.upper()})
    with pytest.raises(ModelLoadError) as err:
        load_model({**spec, "sha256": "0" * 64})
    msg = str(err.value)
    assert "'pinned'" in msg and "field `sha256`" in msg and good in msg and "0" * 64 in msg
    with pytest.raises(ModelLoadError, match="64 hex digits"):
        load_model({**spec, "sha256": "abc"})


def test_missing_file_is_downloaded_from_url_and_verified(tmp_path: Path) -> None:
    from oodbench.models import file_sha256

    net = _small_net()
    source = _save(net.state_dict(), tmp_path / "remote.pt")
    url, sha = source.as_uri(), file_sha256(source)
    spec = {"name": "dl", "arch": "digits-net", "path": "cache/w.pt", "url": url}
    fp_before = model_fingerprint({**spec, "sha256": sha}, tmp_path)
    loaded = load_model({**spec, "sha256": sha}, base_dir=tmp_path)
    assert (tmp_path / "cache" / "w.pt").is_file()
    with torch.no_grad():
        assert torch.equal(loaded(_x()), net(_x()))
    assert model_fingerprint({**spec, "sha256": sha}, tmp_path) == fp_before
    spec["path"] = "cache/other.pt"
    with pytest.raises(ModelLoadError, match="field `sha256`.*deleted"):
        load_model({**spec, "sha256": "1" * 64}, base_dir=tmp_path)
    assert not (tmp_path / "cache" / "other.pt").exists()


# ------------------------------------------------------------------------------------------
# safetensors, torchscript, python


def test_safetensors_adapter(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    net = _small_net()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "w.safetensors"))
    loaded = load_model({"name": "st", "adapter": "safetensors", "arch": "digits-net",
                         "path": "w.safetensors"}, tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded(_x()), net(_x()))
    with pytest.raises(ModelLoadError, match="field `arch`"):
        load_model(str(tmp_path / "w.safetensors"))


def test_torchscript_adapter_and_shorthand(tmp_path: Path) -> None:
    net = _small_net()
    torch.jit.save(torch.jit.trace(net, _x()), str(tmp_path / "net.ts"))
    for ref in ({"name": "ts", "adapter": "torchscript", "path": "net.ts"}, "torchscript:net.ts"):
        loaded = load_model(ref, base_dir=tmp_path)
        assert not loaded.training
        with torch.no_grad():
            torch.testing.assert_close(loaded(_x()), net(_x()))
    with pytest.raises(ModelLoadError, match="field `path`"):
        load_model({"name": "ts", "adapter": "torchscript", "path": "net.ts"},
                   base_dir=tmp_path / "elsewhere")


def test_python_adapter_requires_trust_code(tmp_path: Path) -> None:
    (tmp_path / "my_factory_pkg.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn
        from oodbench.core.registry import architectures

        def build(seed=0, num_classes=10):
            torch.manual_seed(seed)
            return architectures.get("digits-net")(num_classes=num_classes)
    """))
    spec = {"name": "py", "adapter": "python", "factory": "my_factory_pkg:build",
            "factory_kwargs": {"seed": 0, "num_classes": 4}}
    with pytest.raises(ModelLoadError) as err:
        load_model(spec, tmp_path)
    msg = str(err.value)
    assert "'py'" in msg and "field `trust_code`" in msg and "trust_code: true" in msg
    assert "arbitrary code" in msg
    assert "my_factory_pkg" not in sys.modules  # refused before importing anything
    try:
        loaded = load_model({**spec, "trust_code": True}, tmp_path)  # module next to the suite
        by_file = load_model({**spec, "trust_code": True, "factory": "my_factory_pkg.py:build"},
                             tmp_path)
    finally:
        sys.modules.pop("my_factory_pkg", None)
    with torch.no_grad():
        out = loaded(_x())
        assert out.shape == (4, 4)
        assert torch.equal(by_file(_x()), out)
    assert str(tmp_path) not in sys.path
    with pytest.raises(ModelLoadError, match="field `factory`"):
        load_model({**spec, "trust_code": True, "factory": "no_such_module_xyz:build"}, tmp_path)
    with pytest.raises(ModelLoadError, match="trust_code"):
        load_model("python:my_factory_pkg:build", tmp_path)


def test_string_shorthands() -> None:
    from oodbench.models import parse_model_ref

    spec = parse_model_ref("robustbench:Standard")
    assert (spec.adapter, spec.model, spec.dataset, spec.threat_model) == (
        "robustbench", "Standard", None, None)
    spec = parse_model_ref("robustbench:cifar10/L2/Augustin2020Adversarial")
    assert (spec.model, spec.dataset, spec.threat_model) == ("Augustin2020Adversarial",
                                                              "cifar10", "L2")
    assert parse_model_ref("torchscript:a/b.pt").path == "a/b.pt"
    for bad in ("weights.pt", "checkpoint:w.pth", "what-is-this"):
        with pytest.raises(ModelLoadError):
            parse_model_ref(bad)


def test_unknown_adapter() -> None:
    with pytest.raises(ModelLoadError, match="field `adapter`.*Did you mean 'torchscript'"):
        load_model({"name": "x", "adapter": "torchscrip", "path": "x.pt"})


def test_registered_adapters() -> None:
    assert set(models.names()) >= {"checkpoint", "safetensors", "torchscript", "robustbench",
                                   "python"}
    for entry in models:
        assert entry.doc and "required" in entry.meta


# ------------------------------------------------------------------------------------------
# normalisation and eval mode


def test_normalization_equals_normalising_the_input(tmp_path: Path) -> None:
    net = _small_net()
    path = _save(net.state_dict(), tmp_path / "w.pt")
    mean, std = [0.3], [0.2]
    loaded = load_model({"name": "n", "arch": "digits-net", "path": str(path),
                         "normalize": {"mean": mean, "std": std}})
    plain = load_model({"name": "n", "arch": "digits-net", "path": str(path)})
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net((x - 0.3) / 0.2), rtol=0, atol=0)
        assert not torch.allclose(loaded(x), plain(x))
    assert isinstance(loaded[0], Normalize)
    assert not any(k.startswith("0.") for k in loaded.state_dict())  # not in the state dict

    norm = Normalize([0.1, 0.2, 0.3], [0.5, 0.25, 2.0])
    x3 = torch.rand(2, 3, 4, 4)
    expected = (x3 - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor(
        [0.5, 0.25, 2.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(norm(x3), expected)
    x3.requires_grad_(True)
    norm(x3).sum().backward()  # gradients flow to the input for attacks
    assert x3.grad is not None
    assert with_normalization(net, None) is net
    with pytest.raises(ValueError):
        Normalize([0.1, 0.2], [0.5])
    with pytest.raises(ValueError, match="channels"):
        norm(torch.rand(1, 2, 4, 4))


def test_loaded_model_is_in_eval_mode(tmp_path: Path) -> None:
    torch.manual_seed(0)
    options = {"depth": 10, "widen_factor": 1, "drop_rate": 0.5}
    net = architectures.get("wrn-28-10")(**options)  # batch norm and dropout
    path = _save(net.state_dict(), tmp_path / "w.pt")
    loaded = load_model({"name": "bn-dropout", "arch": "wrn-28-10", "arch_options": options,
                         "path": str(path), "normalize": {"mean": [0.5] * 3, "std": [0.25] * 3}})
    assert not any(m.training for m in loaded.modules())
    assert all(p.requires_grad for p in loaded.parameters())  # left as they are
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), loaded(x))


# ------------------------------------------------------------------------------------------
# fingerprint


def test_fingerprint_follows_the_file_not_the_name(tmp_path: Path) -> None:
    path = _save(_small_net(0).state_dict(), tmp_path / "w.pt")
    spec = {"name": "a", "arch": "digits-net", "path": "w.pt"}
    fp = model_fingerprint(spec, tmp_path)
    assert fp["file_sha256"] and fp["arch"] == "digits-net" and "name" not in fp
    assert model_fingerprint({**spec, "name": "b"}, tmp_path) == fp
    assert model_fingerprint(ModelSpec(**spec), str(tmp_path)) == fp
    # same bytes elsewhere: same fingerprint
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "w.pt").write_bytes(path.read_bytes())
    assert model_fingerprint({**spec, "path": "copy/w.pt"}, tmp_path) == fp
    assert model_fingerprint({**spec, "normalize": {"mean": [0.5], "std": [0.5]}}, tmp_path) != fp
    assert model_fingerprint({**spec, "arch_options": {"hidden": 32}}, tmp_path) != fp
    _save(_small_net(1).state_dict(), path)  # the checkpoint changes
    fp2 = model_fingerprint(spec, tmp_path)
    assert fp2["file_sha256"] != fp["file_sha256"]
    assert fp2 != fp
    assert model_fingerprint(spec, tmp_path) == fp2  # cached: same answer


def test_fingerprint_is_json_and_needs_no_loading(tmp_path: Path) -> None:
    import json

    spec = {"name": "x", "adapter": "python", "factory": "does_not_exist:build",
            "factory_kwargs": {"k": 1}, "normalize": {"mean": [0.5], "std": [0.5]}}
    fp = model_fingerprint(spec, tmp_path)  # would fail to load; fingerprint does not care
    assert json.loads(json.dumps(fp)) == fp
    assert fp["file_sha256"] is None and fp["factory_kwargs"] == {"k": 1}
    url_fp = model_fingerprint({"name": "u", "arch": "lenet", "path": "w.pt",
                                "url": "https://example.org/w.pt"}, tmp_path)
    assert url_fp["file_sha256"] is None and url_fp["url"] == "https://example.org/w.pt"


# ------------------------------------------------------------------------------------------
# robustbench


def test_autoattack_alias_for_pyautoattack() -> None:
    # pyautoattack is a test dependency, so this never skips: it fails where the alias breaks
    assert importlib.util.find_spec("pyautoattack") is not None
    ensure_autoattack()
    import autoattack
    from autoattack import AutoAttack  # noqa: F401
    from autoattack.state import EvaluationState  # noqa: F401

    assert autoattack is not None


def test_robustbench_fingerprint_uses_the_model_dir_file(tmp_path: Path) -> None:
    spec = {"name": "rb", "adapter": "robustbench", "model": "Ding2020MMA", "model_dir": "zoo"}
    path = robustbench_file(ModelSpec(**spec), tmp_path)
    assert path == tmp_path / "zoo" / "cifar10" / "Linf" / "Ding2020MMA.pt"
    fp = model_fingerprint(spec, tmp_path)
    assert fp["file_sha256"] is None and (fp["dataset"], fp["threat_model"]) == ("cifar10", "Linf")
    assert fp == model_fingerprint({**spec, "dataset": "cifar10", "threat_model": "Linf"}, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"weights")
    assert model_fingerprint(spec, tmp_path)["file_sha256"] is not None


@pytest.mark.slow
def test_robustbench_loads_a_local_checkpoint_without_network(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Ding2020MMA (CIFAR-10, Linf) is the smallest non-ensemble, non-timm entry: a WRN-28-4 with
    # RobustBench's WideResNet names, i.e. our wrn-28-10 with widen_factor=4. RobustBench reads
    # a plain state dict (or {"state_dict": …}) from model_dir/cifar10/Linf/Ding2020MMA.pt.
    torch.manual_seed(0)
    state = architectures.get("wrn-28-10")(depth=28, widen_factor=4).state_dict()
    path = tmp_path / "zoo" / "cifar10" / "Linf" / "Ding2020MMA.pt"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)

    def no_network(*args, **kwargs):
        raise AssertionError("robustbench tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    net = load_model({"name": "mma", "adapter": "robustbench", "model": "Ding2020MMA",
                      "model_dir": "zoo"}, tmp_path)
    assert not net.training
    loaded = net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    with torch.no_grad():
        assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ModelLoadError, match="field `model`.*Ding2020MMA"):
        load_model({"name": "typo", "adapter": "robustbench", "model": "Ding2020MM",
                    "model_dir": "zoo"}, tmp_path)
