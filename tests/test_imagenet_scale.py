"""224×224 inputs: image-folder's ImageNet geometry and torchvision's ResNet-50 key names."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from oodbench.data import DataRequest, load_dataset


def _folder(root, sizes):
    """Two class folders of RGB PNGs with a known pattern: left half red, right half blue."""
    for i, (h, w) in enumerate(sizes):
        cls = root / ("cat" if i % 2 else "dog")
        cls.mkdir(parents=True, exist_ok=True)
        a = np.zeros((h, w, 3), np.uint8)
        a[:, : w // 2, 0] = 255
        a[:, w // 2:, 2] = 255
        Image.fromarray(a).save(cls / f"{i}.png")
    return root


def test_resize_shorter_side_then_centre_crop(tmp_path):
    root = _folder(tmp_path / "imgs", [(300, 400), (256, 320), (400, 300)])
    data = load_dataset("image-folder", DataRequest(root=tmp_path, options={
        "path": "imgs", "resize": 256, "crop": 224}))
    assert data.images.shape == (3, 3, 224, 224)
    assert data.labels.tolist() == [0, 1, 1]  # sorted class folders: cat/1, dog/0, dog/2
    img = data.images[0]
    # The crop is centred: the red/blue boundary stays in the middle column.
    assert img[0, :, :100].min() > 0.99 and img[2, :, 124:].min() > 0.99
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
    with pytest.raises(ValueError, match="`size`.*or `resize`.*not both"):
        load_dataset("image-folder", DataRequest(root=tmp_path, options={
            "path": "imgs", "resize": 256, "size": 224}))
    with pytest.raises(ValueError, match="smaller than `crop`"):
        load_dataset("image-folder", DataRequest(root=tmp_path, options={
            "path": "imgs", "resize": 100, "crop": 224}))


@pytest.mark.slow
def test_a_torchvision_resnet50_checkpoint_evaluates_on_224_images_with_no_code(tmp_path):
    from safetensors.torch import save_file
    from torchvision.models import resnet50

    from oodbench.pipeline.run import run_suite
    from oodbench.pipeline.suite import load_suite

    _folder(tmp_path / "imgs", [(300, 400), (256, 320), (280, 280), (260, 300)])
    torch.manual_seed(0)
    net = resnet50(weights=None, num_classes=2).eval()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp_path / "r50.safetensors")
    (tmp_path / "suite.yaml").write_text(f"""\
name: imagenet-scale
device: cpu
batch_size: 4
data_root: {tmp_path}
in_distribution: {{name: folder, dataset: image-folder, options: {{path: imgs, resize: 256, crop: 224}}}}
models:
  - name: r50
    adapter: safetensors
    arch: resnet50-imagenet
    arch_options: {{num_classes: 2}}
    path: r50.safetensors
    normalize: {{mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}}
probes:
  - {{name: noise, dataset: uniform-noise, n: 3}}
metrics: [test-error, mmc, auroc]
checks: {{enabled: false}}
""")
    # no trust checks: they call the network with gradients on 128 padded rows, which at 224×224
    # holds ~11 GB of ResNet-50 activations (this test's subject is loading and evaluating; the
    # checks are tested on small networks in tests/test_flags.py)
    result = run_suite(load_suite(tmp_path / "suite.yaml"), output=tmp_path / "r.db", progress=False)
    data = load_dataset("image-folder", DataRequest(root=tmp_path, options={
        "path": "imgs", "resize": 256, "crop": 224}))
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        expected = net((data.images[:] - mean) / std)  # the folder is read in batches: read it all
    wrong = float((expected.argmax(1) != data.labels).float().mean())
    m = {(r.probe, r.metric): r.value for r in result.metrics.itertuples()}
    assert m[("folder", "test-error")] == pytest.approx(wrong)
    assert m[("folder", "mmc")] == pytest.approx(float(expected.softmax(1).max(1).values.mean()), rel=1e-5)
    assert ("noise", "auroc") in m
