"""Tiny copies of OpenOOD v1.5's and NINCO's on-disk layouts: real list files, real PNG/JPEG files.

The layouts are written here from OpenOOD's ``openood/evaluation_api/datasets.py`` (``DATA_INFO``:
``benchmark_imglist/<benchmark>/test_*.txt`` lists whose paths are relative to
``images_classic/`` or ``images_largescale/``) and NINCO's ``data/*.csv`` (``NINCO_OOD_classes/
<class>/``, ``NINCO_popular_datasets_subsamples/<set>/``, ``NINCO_OOD_unit_tests/<test>/``),
independently of the suites, so a suite that names a wrong file fails on them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: benchmark -> (image root, [(list file, folder of its images, label or -1)]); ID test first.
OPENOOD: dict[str, list[tuple[str, str, str, int]]] = {
    "cifar10": [
        ("images_classic", "test_cifar10.txt", "cifar10/test", 1),
        ("images_classic", "test_cifar100.txt", "cifar100/test", -1),
        ("images_classic", "test_tin.txt", "tin/test", -1),
        ("images_classic", "test_mnist.txt", "mnist/test", -1),
        ("images_classic", "test_svhn.txt", "svhn/test", -1),
        ("images_classic", "test_texture.txt", "texture/images", -1),
        ("images_classic", "test_places365.txt", "places365/test", -1),
        ("images_classic", "test_cifar10c.txt", "cifar10c/test", 1),
    ],
    "cifar100": [
        ("images_classic", "test_cifar100.txt", "cifar100/test", 1),
        ("images_classic", "test_cifar10.txt", "cifar10/test", -1),
        ("images_classic", "test_tin.txt", "tin/test", -1),
        ("images_classic", "test_mnist.txt", "mnist/test", -1),
        ("images_classic", "test_svhn.txt", "svhn/test", -1),
        ("images_classic", "test_texture.txt", "texture/images", -1),
        ("images_classic", "test_places365.txt", "places365/test", -1),
    ],
    "imagenet200": [
        ("images_largescale", "test_imagenet200.txt", "imagenet_1k/val", 1),
        ("images_largescale", "test_ssb_hard.txt", "ssb_hard", -1),
        ("images_largescale", "test_ninco.txt", "ninco", -1),
        ("images_largescale", "test_inaturalist.txt", "inaturalist/images", -1),
        ("images_classic", "test_textures.txt", "texture/images", -1),
        ("images_largescale", "test_openimage_o.txt", "openimage_o/images", -1),
        ("images_largescale", "test_imagenet200_v2.txt", "imagenet_v2", 1),
        ("images_largescale", "test_imagenet200_c.txt", "imagenet_c", 1),
        ("images_largescale", "test_imagenet200_r.txt", "imagenet_r", 1),
    ],
    "imagenet": [
        ("images_largescale", "test_imagenet.txt", "imagenet_1k/val", 1),
        ("images_largescale", "test_ssb_hard.txt", "ssb_hard", -1),
        ("images_largescale", "test_ninco.txt", "ninco", -1),
        ("images_largescale", "test_inaturalist.txt", "inaturalist/images", -1),
        ("images_classic", "test_textures.txt", "texture/images", -1),
        ("images_largescale", "test_openimage_o.txt", "openimage_o/images", -1),
        ("images_largescale", "test_imagenet_v2.txt", "imagenet_v2", 1),
        ("images_largescale", "test_imagenet_c.txt", "imagenet_c", 1),
        ("images_largescale", "test_imagenet_r.txt", "imagenet_r", 1),
        ("images_largescale", "test_imagenet_es.txt", "imagenet_es", 1),
    ],
}

NINCO_UNIT_TESTS = ("Gaussian", "Rademacher", "black", "blobs", "grey", "horizontal_stripes",
                    "low_freq", "low_freq_channelfullscale", "low_freq_colorrange",
                    "low_freq_pixel_perm", "monochrome", "pixel_perm", "tricolour",
                    "tricolour_primary", "uni", "vertical_stripes", "white")
NINCO_POPULAR = ("360OpenSet", "COOD", "ImageNet_1k_OOD_400_ood", "ImageNet_O", "OpenImage_O",
                 "Places", "SSB_easy", "SSB_hard", "Species", "Textures", "iNaturalist_OOD_Plants")


def write_image(path: Path, rng: np.random.Generator, size: tuple[int, int]) -> None:
    """A random RGB image, PNG or JPEG by the suffix (as the benchmarks ship both)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(path)


def write_openood(root: Path, benchmark: str, per_list: int = 3, size: tuple[int, int] = (36, 40),
                  classes: int = 10, skip: tuple[str, ...] = ()) -> Path:
    """``root/benchmark_imglist/<benchmark>/*.txt`` and the images they list (``skip``: list
    files written without their images)."""
    rng = np.random.default_rng(0)
    lists = root / "benchmark_imglist" / benchmark
    lists.mkdir(parents=True, exist_ok=True)
    for image_root, list_file, folder, label in OPENOOD[benchmark]:
        lines = []
        for k in range(per_list):
            relative = f"{folder}/{Path(list_file).stem}_{k:03d}.{'png' if k % 2 else 'jpg'}"
            if list_file not in skip:
                write_image(root / image_root / relative, rng, size)
            lines.append(f"{relative} {k % classes if label >= 0 else -1}")
        (lists / list_file).write_text("\n".join(lines) + "\n")
    return root


#: NINCO's 64 OOD classes, as its folders are named (data/NINCO_OOD_classes.csv).
NINCO_CLASSES = (
    "Caracal caracal caracal", "amphiuma_means", "aphanizomenon_flosaquae", "araneus_gemma",
    "arctocephalus_galapagoensis", "bagpipe", "batrachoseps_attenuatus", "cable",
    "chicken_quesadilla", "cirsium_pitcheri", "creme_brulee", "ctenolepisma_longicaudata",
    "cup_cakes", "darlingtonia_californica", "dendrolagus_lumholtzi", "donuts", "door",
    "empty_water_dispencer", "epithelantha_micromeris", "erysimum_franciscanum", "f_field_road",
    "f_forest_path", "ferocactus_pilosus", "fire_extinguisher", "fireworks", "french_fries",
    "glass_of_milk", "gramophone", "haemulon_sciurus", "high heels", "hindu_temple",
    "hippopus_hippopus", "lasionycteris_noctivagans", "lathyrus_odoratus", "lepomis_auritus",
    "leptoglossus_phyllopus", "mbira", "microcystis_wesenbergii", "octopus_bimaculoides",
    "octopus_rubescens", "ozotoceros_bezoarticus", "platycephalus_fuscus", "polistes_dominula",
    "pseudorca_crassidens", "pyramid", "s_sky", "sarpa_salpa", "sarracenia_alata", "scissors",
    "sepia_apama", "sepia_officinalis", "sepioteuthis_australis", "shuttlecock",
    "skipper_caterpillar", "spaghetti_bolognese", "stapler", "streptopus_lanceolatus",
    "tapirus_bairdii", "triturus_marmoratus", "tursiops_aduncus", "vaccinium_reticulatum",
    "waffles", "walker", "windsor_chair")


def write_ninco(root: Path, per_folder: int = 2, size: tuple[int, int] = (36, 40)) -> Path:
    """``root/NINCO/{NINCO_OOD_classes,NINCO_popular_datasets_subsamples,NINCO_OOD_unit_tests}/
    <folder>/<folder>_<k>.{jpg,png}`` (NINCO_all.tar.gz unpacked) and an ImageNet-1K validation
    folder ``root/imagenet/val/<wnid>/`` (torchvision's ImageFolder layout)."""
    rng = np.random.default_rng(1)
    base = root / "NINCO"
    folders = [("NINCO_OOD_classes", name) for name in NINCO_CLASSES]
    folders += [("NINCO_popular_datasets_subsamples", name) for name in NINCO_POPULAR]
    folders += [("NINCO_OOD_unit_tests", name) for name in NINCO_UNIT_TESTS]
    for part, name in folders:
        for k in range(per_folder):
            write_image(base / part / name / f"{name}_{k:03d}.{'png' if k % 2 else 'jpg'}", rng, size)
    for wnid in ("n01440764", "n01443537"):
        for k in range(2):
            write_image(root / "imagenet" / "val" / wnid / f"ILSVRC2012_val_{k:08d}.JPEG", rng, size)
    return root


def tiny_net(num_classes: int = 10):
    """A small classifier for any input size (pooled to 8×8 first: every model call has 128
    rows, :mod:`oodbench.models.fixed_rows`, so a 224×224 convolution would dominate the tests),
    then a convolution, global pooling and a linear layer."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.AdaptiveAvgPool2d(8), nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, num_classes))
