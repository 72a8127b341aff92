"""The timm, huggingface and torch-export adapters on models built and saved offline here.

Each network is random-initialised by its own library, saved the way its users save it (timm's
``save_for_hf`` folder or a bare state dict, transformers' ``save_pretrained`` folder,
``torch.export.save``), loaded through ``load_model`` and compared with the library's own
forward pass on the library's own preprocessing of the same [0, 1] images.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import timm.data
import torch
import transformers
from safetensors.torch import save_file
from torch import nn

from oodbench.models import ModelLoadError, load_model, model_fingerprint
from oodbench.models.features import FeaturesError, head_layer, logits_and_features
from oodbench.models.libraries.torch_export_models import NoGradientError
from oodbench.core.registry import models

VIT_ARGS = {"img_size": 16, "patch_size": 4, "depth": 1, "embed_dim": 48, "num_heads": 2}


def _images(n: int, size: int, seed: int = 0, channels: int = 3) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def tiny_vit(num_classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=num_classes,
                             pretrained_cfg_overlay={"input_size": (3, 16, 16)}, **VIT_ARGS).eval()


def save_timm_folder(net: nn.Module, folder: Path) -> Path:
    """What ``timm.models._hub.save_for_hf(net, folder, model_args=…, safe_serialization=True)``
    writes (that function needs huggingface_hub's upload API, which hub 2.x moved)."""
    folder.mkdir(parents=True)
    save_file(net.state_dict(), folder / "model.safetensors")
    timm.models._hub.save_config_for_hf(net, folder / "config.json", model_args=VIT_ARGS)
    return folder


def tiny_hf_convnext(folder: Path, num_labels: int = 5, size: int = 16) -> nn.Module:
    """A two-stage ConvNeXt saved with its image processor, as `save_pretrained` writes them."""
    torch.manual_seed(0)
    config = transformers.ConvNextConfig(num_channels=3, hidden_sizes=[8, 16], depths=[1, 1],
                                         num_stages=2, num_labels=num_labels, image_size=size)
    net = transformers.ConvNextForImageClassification(config).eval()
    net.save_pretrained(folder)
    transformers.ConvNextImageProcessor(size={"shortest_edge": size}, crop_pct=0.875).save_pretrained(folder)
    return net


def timm_reference(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm's own evaluation transform (on tensor images) and forward pass."""
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=net))
    with torch.no_grad():
        return net(torch.stack([transform(image) for image in x]))


def test_the_adapters_are_listed() -> None:
    assert {"timm", "huggingface", "torch-export"} <= set(models.names())


# ------------------------------------------------------------------------------------------
# timm


def test_timm_folder_matches_timms_own_preprocessing_and_forward(tmp_path) -> None:
    net = tiny_vit()
    folder = save_timm_folder(net, tmp_path / "vit")
    model = load_model({"name": "vit", "adapter": "timm", "path": str(folder)})
    for size in (16, 32, 9):  # the model's size, larger, smaller: resized and cropped inside
        x = _images(4, size, seed=size)
        with torch.no_grad():
            torch.testing.assert_close(model(x), timm_reference(net, x), rtol=1e-5, atol=1e-5)
    logits, features = logits_and_features(model, _images(3, 24))
    assert features.shape == (3, VIT_ARGS["embed_dim"])
    torch.testing.assert_close(head_layer(model)(features), logits, rtol=1e-5, atol=1e-5)
    assert head_layer(model) is model[1].head


@pytest.mark.slow  # a timm ResNet at its 176×176 input, loaded twice: ~10 s on 2 shared CPUs
def test_timm_state_dict_file_takes_the_class_count_from_its_classifier(tmp_path) -> None:
    torch.manual_seed(1)
    net = timm.create_model("resnet10t", pretrained=False, num_classes=7).eval()
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}},
               tmp_path / "r.pth")
    save_file(net.state_dict(), tmp_path / "r.safetensors")
    x = _images(2, 40)
    for file in ("r.pth", "r.safetensors"):
        model = load_model({"name": "r", "adapter": "timm", "model": "resnet10t", "path": file},
                           tmp_path)
        with torch.no_grad():
            out = model(x)
        assert out.shape == (2, 7)  # resnet10t's default is 1000: the checkpoint said 7
        torch.testing.assert_close(out, timm_reference(net, x), rtol=1e-5, atol=1e-5)
    size = timm.data.resolve_data_config({}, model=net)["input_size"]
    assert model[0].geometry.shape == size == (3, 176, 176)  # resnet10t's pretrained_cfg
    assert model[1].fc is head_layer(model)


def test_timm_suite_values_override_the_config(tmp_path, caplog) -> None:
    folder = save_timm_folder(tiny_vit(), tmp_path / "vit")
    model = load_model({"name": "vit", "adapter": "timm", "path": str(folder), "crop_pct": 1.0,
                        "interpolation": "bilinear", "normalize": {"mean": [0.2] * 3, "std": [0.3] * 3}})
    geometry = model[1][0].geometry  # Normalize (the suite's) first, then the input layer
    assert (geometry.resize, geometry.crop, geometry.interpolation) == (16, (16, 16), "bilinear")
    assert model[1][0].normalize is None
    text = caplog.text
    assert "crop_pct 1 from the suite" in text and "interpolation bilinear from the suite" in text
    assert "normalize [0.2, 0.2, 0.2]/[0.3, 0.3, 0.3] from the suite" in text


def test_timm_errors_name_the_field_and_the_fix(tmp_path) -> None:
    folder = save_timm_folder(tiny_vit(), tmp_path / "vit")
    with pytest.raises(ModelLoadError, match=r"field `model`: timm has no model 'vit_tinny_patch16_224'.*did you mean"):
        load_model({"name": "v", "adapter": "timm", "model": "vit_tinny_patch16_224", "path": str(folder)})
    with pytest.raises(ModelLoadError, match=r"field `model`: .* does not fit timm model 'vit_tiny_patch16_224'"):
        load_model({"name": "v", "adapter": "timm", "path": str(folder), "num_classes": 3})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"holds none of model.safetensors"):
        load_model({"name": "v", "adapter": "timm", "model": "resnet10t", "path": str(tmp_path / "empty")})


def test_timm_fingerprint_hashes_the_weights_and_keeps_old_keys(tmp_path) -> None:
    folder = save_timm_folder(tiny_vit(), tmp_path / "vit")
    fp = model_fingerprint({"name": "v", "adapter": "timm", "path": str(folder), "crop_pct": 0.9})
    assert fp["file_sha256"] and fp["crop_pct"] == 0.9
    plain = model_fingerprint({"name": "p", "adapter": "torchscript", "path": "x.pt"})
    assert not {"num_classes", "input_size", "crop_pct", "interpolation", "config_sha256"} & set(plain)


def test_fingerprints_hash_the_library_configs_beside_the_weights(tmp_path) -> None:
    """timm's config.json and Hugging Face's config.json + preprocessor_config.json set the
    architecture and preprocessing: editing one makes a new job key, the weights unchanged."""
    import hashlib

    folder = save_timm_folder(tiny_vit(), tmp_path / "vit")
    spec = {"name": "v", "adapter": "timm", "path": str(folder)}
    before = model_fingerprint(spec)
    config = folder / "config.json"
    assert before["config_sha256"] == {"config.json": hashlib.sha256(config.read_bytes()).hexdigest()}
    edited = json.loads(config.read_text())
    edited["pretrained_cfg"]["mean"] = [0.4, 0.4, 0.4]
    config.write_text(json.dumps(edited))
    after = model_fingerprint(spec)
    assert after["file_sha256"] == before["file_sha256"] and after["config_sha256"] != before["config_sha256"]
    weights = tmp_path / "vit.safetensors"  # a bare weights file: timm's own config, by name
    save_file(tiny_vit().state_dict(), weights)
    assert "config_sha256" not in model_fingerprint(
        {"name": "w", "adapter": "timm", "model": "vit_tiny_patch16_224", "path": str(weights)})
    tiny_hf_convnext(tmp_path / "hf")
    hf = model_fingerprint({"name": "h", "adapter": "huggingface", "path": str(tmp_path / "hf")})
    assert hf["config_sha256"] == {
        name: hashlib.sha256((tmp_path / "hf" / name).read_bytes()).hexdigest()
        for name in ("config.json", "preprocessor_config.json")}


def test_a_store_written_before_config_hashing_still_verifies(tmp_path, monkeypatch) -> None:
    """Job keys of a store written when only the weights were hashed (the fingerprint without
    ``config_sha256``) are not recomputed by ``verify``: the store still verifies."""
    from click.testing import CliRunner

    import oodbench.pipeline.plan.planner as planner
    from oodbench.cli import main
    from oodbench.pipeline.run import run_suite
    from oodbench.pipeline.suite import load_suite

    save_timm_folder(tiny_vit(), tmp_path / "vit")
    (tmp_path / "suite.yaml").write_text("""\
name: old store
seed: 0
device: cpu
in_distribution: {name: digits 0-4, dataset: digits, n: 40, options: {classes: [0, 1, 2, 3, 4]}}
models: [{name: timm vit, adapter: timm, path: vit}]
probes: [{name: uniform, dataset: uniform-noise, n: 20}]
metrics: [test-error, auroc]
""")
    suite = load_suite(tmp_path / "suite.yaml")
    with monkeypatch.context() as patch:  # the fingerprint as it was before config files were hashed
        new = planner.model_fingerprint
        patch.setattr(planner, "model_fingerprint",
                      lambda *a, **k: {key: v for key, v in new(*a, **k).items() if key != "config_sha256"})
        old = run_suite(suite, output=tmp_path / "old.db", progress=False)
    result = CliRunner().invoke(main, ["verify", str(tmp_path / "old.db")])
    assert result.exit_code == 0, result.output
    rerun = run_suite(suite, output=tmp_path / "old.db", progress=False)  # now config-hashed keys
    from oodbench.pipeline.store import ResultStore

    with ResultStore(tmp_path / "old.db", readonly=True) as store:
        keys = [set(store.run_jobs(r.run_id).job_hash) for r in (old, rerun)]
    assert keys[0] and not keys[0] & keys[1]  # the config is part of the key now
    assert CliRunner().invoke(main, ["verify", str(tmp_path / "old.db")]).exit_code == 0
    assert CliRunner().invoke(main, ["verify", "--run", str(old.run_id), str(tmp_path / "old.db")]).exit_code == 0


# ------------------------------------------------------------------------------------------
# huggingface


def test_huggingface_folder_matches_the_processor_and_forward(tmp_path) -> None:
    net = tiny_hf_convnext(tmp_path / "hf")
    processor = transformers.AutoImageProcessor.from_pretrained(tmp_path / "hf")
    model = load_model({"name": "hf", "adapter": "huggingface", "path": "hf"}, tmp_path)
    for size in (16, 30):
        x = _images(3, size, seed=size)
        pixels = processor(images=list(x * 255), return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            torch.testing.assert_close(model(x), net(pixel_values=pixels).logits, rtol=1e-5, atol=1e-5)
    logits, features = logits_and_features(model, _images(2, 16))
    assert features.shape == (2, 16)
    assert head_layer(model) is net.classifier or head_layer(model) is model[1].net.classifier
    torch.testing.assert_close(head_layer(model)(features), logits)


def test_huggingface_refuses_pickles_and_remote_code(tmp_path) -> None:
    tiny_hf_convnext(tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    config["auto_map"] = {"AutoModelForImageClassification": "modeling_mine.MyNet"}
    (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"field `trust_code`: .* asks for remote code"):
        load_model({"name": "hf", "adapter": "huggingface", "path": str(tmp_path / "hf")})
    tiny_hf_convnext(tmp_path / "bin")
    state = transformers.ConvNextForImageClassification.from_pretrained(tmp_path / "bin").state_dict()
    (tmp_path / "bin" / "model.safetensors").unlink()
    torch.save(state, tmp_path / "bin" / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"has no model.safetensors \(it holds pytorch_model.bin"):
        load_model({"name": "hf", "adapter": "huggingface", "path": str(tmp_path / "bin")})


# ------------------------------------------------------------------------------------------
# torch.export


def _exported(tmp_path: Path, net: nn.Module, dynamic: bool = True) -> Path:
    x = _images(2, 12)
    shapes = ({0: torch.export.Dim("batch", max=4096)},) if dynamic else None
    torch.export.save(torch.export.export(net.eval(), (x,), dynamic_shapes=shapes), tmp_path / "m.pt2")
    return tmp_path / "m.pt2"


def _conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 5))


class _Detached(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body, self.head = nn.Conv2d(3, 4, 3), nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            h = self.body(x)
        return self.head(h.mean((2, 3)))


def test_torch_export_loads_and_passes_gradients(tmp_path) -> None:
    net = _conv_net().eval()
    model = load_model({"name": "e", "adapter": "torch-export", "path": str(_exported(tmp_path, net))})
    x = _images(128, 12, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x), rtol=1e-5, atol=1e-5)
    xg = x.clone().requires_grad_(True)
    grad = torch.autograd.grad(model(xg).logsumexp(1).sum(), xg)[0]
    xe = x.clone().requires_grad_(True)
    torch.testing.assert_close(grad, torch.autograd.grad(net(xe).logsumexp(1).sum(), xe)[0])
    assert model(_images(2, 20)).shape == (2, 5)  # other sizes are resized to the program's
    with pytest.raises(FeaturesError, match="no nn.Linear"):
        head_layer(model)


def test_torch_export_refuses_what_it_cannot_run(tmp_path) -> None:
    model = load_model({"name": "d", "adapter": "torch-export",
                        "path": str(_exported(tmp_path, _Detached()))})
    x = _images(2, 12).requires_grad_(True)
    with pytest.raises(NoGradientError, match="does not pass gradients to its input"):
        model(x)
    with torch.no_grad():
        assert model(x).shape == (2, 5)  # clean passes still work
    static = _exported(tmp_path, _conv_net(), dynamic=False)
    with pytest.raises(ModelLoadError, match="exported for batches of exactly 2 images"):
        load_model({"name": "s", "adapter": "torch-export", "path": str(static)})


# ------------------------------------------------------------------------------------------
# in a suite

LIBRARY_SUITE = """\
name: library models
seed: 0
device: cpu
in_distribution: {name: digits 0-4, dataset: digits, options: {classes: [0, 1, 2, 3, 4]}}
models:
  - {name: timm vit, adapter: timm, path: vit}
  - {name: hf convnext, adapter: huggingface, path: hf}
detectors: [msp, energy, {name: knn, k: 5}]
fit: {n: 100}
probes:
  - {name: uniform, dataset: uniform-noise, n: 40}
  - {name: adv. uniform, dataset: uniform-noise, n: 40, attack: {name: adversarial-noise, steps: 5, step_size: 0.05}}
metrics: [auroc, mmc]
"""


@pytest.mark.slow  # two networks, three detectors, a 5-step attack on each: ~1 min CPU
def test_timm_vit_and_hf_convnext_run_a_suite_clean_and_attacked(tmp_path) -> None:
    from oodbench.pipeline.run import run_suite
    from oodbench.pipeline.store import ResultStore
    from oodbench.pipeline.suite import load_suite

    vit = tiny_vit()
    save_timm_folder(vit, tmp_path / "vit")
    tiny_hf_convnext(tmp_path / "hf")
    (tmp_path / "suite.yaml").write_text(LIBRARY_SUITE)
    suite = load_suite(tmp_path / "suite.yaml")
    result = run_suite(suite, output=tmp_path / "r.db", progress=False)
    m = result.metrics
    values = {(a, d, p, k): v for a, d, p, k, v in
              zip(m["model"], m["detector"], m["probe"], m["metric"], m["value"])}
    for model in ("timm vit", "hf convnext"):
        for detector in ("msp", "energy", "knn"):
            clean = values[(model, detector, "uniform", "auroc")]
            attacked = values[(model, detector, "adv. uniform", "auroc")]
            assert 0 <= attacked < clean, (model, detector, clean, attacked)
    # the stored clean logits are the library's forward on its own preprocessing of the digits
    with ResultStore(tmp_path / "r.db") as store:
        jobs = store.run_jobs(result.run_id)
        clean_jobs = jobs[jobs.probe.isna() & (jobs.model == "timm vit")]
        stored = store.get_job(clean_jobs.job_hash.iloc[0])["logits"]
    from oodbench.data import DataRequest, load_dataset
    from oodbench.data.stream import materialise

    digits = materialise(load_dataset("digits", DataRequest(
        root=tmp_path, options={"classes": [0, 1, 2, 3, 4]}, seed=0)).images)
    expected = timm_reference(vit, digits.expand(-1, 3, -1, -1))
    torch.testing.assert_close(torch.from_numpy(stored.copy()), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("field, value, message", [
    ("crop_pct", "1.5", "less than or equal to 1"),
    ("input_size", "true", "valid integer"),
    ("interpolation", "lanczos", "'nearest', 'bilinear' or 'bicubic'"),
    ("num_classes", "0", "greater than 0"),
])
def test_suite_validation_names_a_bad_adapter_option(tmp_path, field, value, message) -> None:
    from oodbench.pipeline.suite import SuiteError, load_suite

    text = LIBRARY_SUITE.replace("{name: timm vit, adapter: timm, path: vit}",
                                 f"{{name: timm vit, adapter: timm, path: vit, {field}: {value}}}")
    (tmp_path / "suite.yaml").write_text(text)
    with pytest.raises(SuiteError, match=rf"(?s)models.*0.*{field}.*{message}"):
        load_suite(tmp_path / "suite.yaml")


class _Payload:
    """An object only code can rebuild: what a malicious archive would carry."""


def test_torch_export_archive_with_a_pickle_needs_trust_code(tmp_path) -> None:
    import io
    import zipfile

    good = _exported(tmp_path, _conv_net())
    bad = tmp_path / "bad.pt2"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("sample_inputs/model.pt"):
                buffer = io.BytesIO()
                torch.save(_Payload(), buffer)
                data = buffer.getvalue()
            dst.writestr(item, data)
    with pytest.raises(ModelLoadError, match=r"field `trust_code`: .*pickled payloads.*sample_inputs"):
        load_model({"name": "b", "adapter": "torch-export", "path": str(bad)})


def test_tables_say_which_preprocessing_the_suite_overrode(tmp_path) -> None:
    """A suite value over a library config (timm's pretrained_cfg, the HF image processor) is
    named, per model and field, under `show`'s table and every report layout; a model the
    suite leaves to its config gets no note."""
    from click.testing import CliRunner

    from oodbench.cli import main
    from oodbench.report import render
    from oodbench.pipeline.run import run_suite
    from oodbench.pipeline.suite import load_suite

    save_timm_folder(tiny_vit(), tmp_path / "vit")
    tiny_hf_convnext(tmp_path / "hf")
    (tmp_path / "suite.yaml").write_text("""\
name: overrides
seed: 0
device: cpu
in_distribution: {name: digits 0-4, dataset: digits, n: 60, options: {classes: [0, 1, 2, 3, 4]}}
models:
  - {name: timm vit, adapter: timm, path: vit, crop_pct: 1.0, normalize: {mean: [0.5], std: [0.25]}}
  - {name: hf convnext, adapter: huggingface, path: hf, interpolation: bilinear}
  - {name: hf plain, adapter: huggingface, path: hf}
probes:
  - {name: uniform, dataset: uniform-noise, n: 20}
metrics: [test-error, mmc, auroc]
""")
    run_suite(load_suite(tmp_path / "suite.yaml"), output=tmp_path / "r.db", progress=False)
    vit = "\u2021 timm vit: normalize, crop_pct set by the suite, overriding its timm pretrained_cfg"
    convnext = ("\u2021 hf convnext: interpolation set by the suite, overriding its image-processor "
                "config (preprocessor_config.json)")
    shown = CliRunner().invoke(main, ["show", str(tmp_path / "r.db")])
    assert shown.exit_code == 0, shown.output
    assert vit in shown.output and convnext in shown.output and "hf plain:" not in shown.output
    for layout in ("hein2019-table1", "ratio-summary", "detectors"):
        for fmt in ("md", "html", "latex"):
            text = render(tmp_path / "r.db", fmt=fmt, layout=layout).replace("\\_", "_")  # md, tex
            assert vit in text and convnext in text and "hf plain:" not in text, (layout, fmt)


def test_huggingface_entries_need_a_folder_or_a_hub_id() -> None:
    """`path` or `model: org/name` (the README's two forms) validate; neither is refused with
    both fields named, before anything loads."""
    from oodbench.pipeline.suite import SuiteError, parse_suite

    base = {"name": "s", "in_distribution": {"dataset": "digits"},
            "probes": [{"dataset": "uniform-noise"}]}
    for entry in ({"path": "models/convnext"}, {"model": "facebook/convnext-tiny-224"}):
        parse_suite({**base, "models": [{"name": "m", "adapter": "huggingface", **entry}]})
    with pytest.raises(SuiteError, match=r"models\[0\]\.path`: m: adapter 'huggingface' needs `path` or `model`"):
        parse_suite({**base, "models": [{"name": "m", "adapter": "huggingface"}]})
