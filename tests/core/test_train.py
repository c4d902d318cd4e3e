"""ArcFace training: augmentations, the loss, cached-feature training, resume, outputs, CLI."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from imgfinder import paths
from imgfinder.cli import main
from imgfinder.core.arcface import ArcFace
from imgfinder.core.augment import build_transform, make_views, squash
from imgfinder.core.extract import Extractor, ModelConfig, head_tag
from imgfinder.core.library import Library, run
from imgfinder.core.model import FusedECA
from imgfinder.core.train import (
    TrainConfig,
    Trainer,
    discover,
    list_model_files,
    pooled_descriptor,
    reestimate_batchnorm,
    resolve_batchnorm,
    train,
)
from imgfinder.core.weights import BUNDLE_FORMAT, file_digest
from imgfinder.errors import ImgfinderError, ModelMismatchError
from tests.common import TEST_INPUT_SIZE, cli_args
from tests.imgutil import make_jpeg, textured

COLOURS = [(200, 60, 60), (60, 180, 70), (70, 80, 210)]


def make_classes(root: Path, per_class: int = 4, classes: int = 3) -> Path:
    for c in range(classes):
        for i in range(per_class):
            make_jpeg(root / f"class{c}" / f"{i}.jpg", (96, 80), COLOURS[c], seed=10 * c + i)
    return root


def tiny_config(dataset: Path, weights: Path, **kw) -> TrainConfig:
    model = ModelConfig(weights=str(weights), device="cpu", input_size=TEST_INPUT_SIZE)
    defaults = {"epochs": 4, "views": 2, "batch_size": 4, "train": "eca"}
    return TrainConfig(str(dataset), model, **{**defaults, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, weights_file):
    """One ECA-only run shared by the tests that only inspect its output."""
    base = tmp_path_factory.mktemp("trained")
    paths.set_data_dir(base / "data")
    try:
        dataset = make_classes(base / "flowers")
        cfg = tiny_config(dataset, weights_file)
        result = run(train(cfg))
    finally:
        paths.set_data_dir(None)
    return cfg, result, base


# -- augmentations -------------------------------------------------------------------------
def test_augmented_views_stay_valid_images():
    img = textured((90, 70), seed=3)
    views = make_views(img, 64, 6, seed=1)
    assert views.shape == (6, 3, 64, 64) and views.dtype == torch.uint8
    clean = torch.from_numpy(squash(img, 64).copy()).permute(2, 0, 1)
    assert torch.equal(views[0], clean)
    assert all(not torch.equal(views[0], v) for v in views[1:])
    assert torch.equal(views, make_views(img, 64, 6, seed=1))  # seeded: rebuildable
    assert not torch.equal(views, make_views(img, 64, 6, seed=2))
    grey = make_views(img.convert("L"), 64, 2, seed=0)  # any mode comes out RGB
    assert grey.shape == (2, 3, 64, 64)
    out = build_transform(64)(clean)
    assert out.dtype == torch.float32 and out.shape == (3, 64, 64)
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0 and torch.isfinite(out).all()


# -- loss and descriptor -------------------------------------------------------------------
def test_arcface_adds_the_margin_to_the_true_class_only():
    torch.manual_seed(0)
    head = ArcFace(dim=8, classes=4, margin=0.5, scale=10.0)
    x, labels = torch.randn(5, 8), torch.tensor([0, 1, 2, 3, 0])
    plain = 10.0 * head.cosine(x)
    logits = head.logits(x, labels)
    mask = torch.zeros_like(plain, dtype=torch.bool)
    mask[torch.arange(5), labels] = True
    assert torch.allclose(logits[~mask], plain[~mask], atol=1e-5)
    assert (logits[mask] < plain[mask]).all()
    theta = torch.acos(plain[mask][0] / 10.0)
    if theta + 0.5 < math.pi:
        assert torch.isclose(logits[mask][0], 10.0 * torch.cos(theta + 0.5), atol=1e-4)
    no_margin = ArcFace(8, 4, margin=0.0, scale=10.0)
    no_margin.load_state_dict(head.state_dict())
    assert head(x, labels) > no_margin(x, labels)


def test_pooled_descriptor_equals_the_models_fuse():
    torch.manual_seed(0)
    model = FusedECA()
    torch.nn.init.normal_(model.eca.conv.weight, std=0.3)
    fmap = torch.relu(torch.randn(3, 2048, 4, 4))
    expected = model.fuse(fmap).descriptor
    got = pooled_descriptor(model.eca, fmap.mean(dim=(2, 3)), fmap.amax(dim=(2, 3)))
    assert torch.allclose(got, expected, atol=1e-6)


def test_discover_labelled_and_unlabelled(tmp_path):
    root = make_classes(tmp_path / "ds", per_class=2, classes=2)
    make_jpeg(root / "loose.jpg", seed=99)
    data = discover(root)
    assert data.classes == ["class0", "class1"] and len(data.files) == 4  # loose file ignored
    assert discover(root, unlabelled=True).labels.tolist() == list(range(5))
    with pytest.raises(ImgfinderError, match="two class"):
        discover(root / "class0")


# -- training runs -------------------------------------------------------------------------
def test_training_lowers_the_loss_and_writes_a_loadable_head(trained, weights_file):
    cfg, result, base = trained
    assert not result.cancelled and result.epochs_done == 4
    assert result.epoch_loss[-1] < result.epoch_loss[0]
    assert result.output == base / "data" / "models" / "head-flowers.pt"
    assert not result.checkpoint.exists()  # removed after a finished run
    saved = torch.load(result.output, weights_only=True)
    assert saved["meta"]["trained"] == "eca" and saved["meta"]["margin"] == 0.3
    trained_ex = Extractor(ModelConfig(str(weights_file), str(result.output), "cpu", 64))
    base_ex = Extractor(ModelConfig(str(weights_file), None, "cpu", 64))
    assert head_tag(saved["head"]) in trained_ex.model_id
    assert trained_ex.model_id != base_ex.model_id
    assert trained_ex.model.eca.conv.weight.tolist() == saved["head"]["conv.weight"].tolist()
    (result.output.parent / "junk.pt").write_bytes(b"not torch")
    listed = list_model_files(result.output.parent)
    assert [(m.path, m.kind) for m in listed] == [(result.output, "head")]
    assert listed[0].meta["input_size"] == TEST_INPUT_SIZE


def test_trained_head_needs_a_reindex(trained, tmp_path, model_config):
    _, result, _ = trained
    photos = tmp_path / "photos"
    for i in range(3):
        make_jpeg(photos / f"{i}.jpg", (80, 60), seed=50 + i)
    lib = Library(tmp_path / "lib", model_config, index_backend="exact")
    run(lib.index([photos]))
    lib.check_model()
    lib.close()
    head_cfg = ModelConfig(model_config.weights, str(result.output), "cpu", TEST_INPUT_SIZE)
    lib = Library(tmp_path / "lib", head_cfg, index_backend="exact")
    try:
        with pytest.raises(ModelMismatchError, match="re-index needed"):
            lib.check_model()
        run(lib.index())  # re-indexing with the new head clears it
        lib.check_model()
        assert len(lib.search(photos / "0.jpg", k=3)) == 3
    finally:
        lib.close()


def test_cancel_then_resume_matches_an_uninterrupted_run(tmp_path, weights_file):
    dataset = make_classes(tmp_path / "ds")
    ref = run(train(tiny_config(dataset, weights_file, output="ref", keep_cache=True)))
    cfg = tiny_config(dataset, weights_file, output="resumed", keep_cache=True)
    cancel = threading.Event()
    steps = []
    gen = train(cfg, cancel=cancel)

    def stop_after_five(p):
        if p.stage == "train":
            steps.append(p)
            if len(steps) == 5:  # epoch 2, step 2 of 3
                cancel.set()

    first = run(gen, stop_after_five)
    assert first.cancelled and first.output is None and first.checkpoint.exists()
    ckpt = torch.load(first.checkpoint, weights_only=True)
    assert (ckpt["epoch"], ckpt["step"]) == (1, 2)
    done = []
    second = run(train(cfg, resume=True), done.append)
    assert not second.cancelled and second.epochs_done == 4
    assert [p.epoch for p in done if p.stage == "train"][0] == 2  # no restart
    assert [p.epoch for p in done if p.stage == "epoch"] == [2, 3, 4]
    assert len(second.epoch_loss) == 4
    np.testing.assert_allclose(second.epoch_loss, ref.epoch_loss, rtol=1e-5)
    a = torch.load(second.output, weights_only=True)["head"]["conv.weight"]
    b = torch.load(ref.output, weights_only=True)["head"]["conv.weight"]
    assert torch.allclose(a, b, atol=1e-6)
    # a checkpoint refuses to continue under other settings
    cancel = threading.Event()
    cancel.set()
    run(train(tiny_config(dataset, weights_file, output="other", keep_cache=True), cancel=cancel))
    with pytest.raises(ImgfinderError, match="margin"):
        run(train(tiny_config(dataset, weights_file, output="other", margin=0.5), resume=True))


def test_cancel_during_feature_caching_resumes_the_cache(tmp_path, weights_file):
    dataset = make_classes(tmp_path / "ds", per_class=2)
    cfg = tiny_config(dataset, weights_file, epochs=1, cache_batch=4)  # 2 images per chunk
    cancel = threading.Event()
    seen = []

    def stop_first(p):
        seen.append(p)
        cancel.set()

    first = run(train(cfg, cancel=cancel), stop_first)
    assert first.cancelled and [(p.stage, p.done) for p in seen] == [("cache", 2)]
    progress = []
    second = run(train(cfg, resume=True), progress.append)
    assert second.output.exists()
    assert [p.done for p in progress if p.stage == "cache"] == [4, 6]


def test_layer4_training_writes_a_weights_bundle(tmp_path, weights_file):
    dataset = make_classes(tmp_path / "ds", per_class=2)
    cfg = tiny_config(
        dataset, weights_file, train="layer4", epochs=1, views=1, batch_size=6, batchnorm="frozen"
    )
    result = run(train(cfg))
    assert result.output.name == "weights-ds.pt"
    bundle = torch.load(result.output, weights_only=True)
    assert bundle["format"] == BUNDLE_FORMAT and bundle["meta"]["trained"] == "layer4"
    base = torch.load(weights_file, weights_only=True)
    assert torch.equal(bundle["backbone"]["layer3.0.conv1.weight"], base["layer3.0.conv1.weight"])
    assert not torch.equal(
        bundle["backbone"]["layer4.0.conv1.weight"], base["layer4.0.conv1.weight"]
    )
    # frozen BatchNorm: running statistics unchanged
    key = "layer4.0.bn1.running_mean"
    assert torch.equal(bundle["backbone"][key], base[key])
    ex = Extractor(ModelConfig(str(result.output), None, "cpu", TEST_INPUT_SIZE))
    assert f"/file-{file_digest(result.output)}/{head_tag(bundle['head'])}/" in ex.model_id
    assert f"/file-{file_digest(weights_file)}/" not in ex.model_id
    assert [m.kind for m in list_model_files(result.output.parent)] == ["bundle"]
    assert ex.embed(dataset / "class0" / "0.jpg").shape == (4096,)


def test_batchnorm_auto_follows_the_backbones_statistics(weights_file):
    model = FusedECA()
    model.load_backbone(torch.load(weights_file, weights_only=True))
    layer4 = model.trunk.last
    assert resolve_batchnorm("auto", layer4) == "train"  # random init: never estimated
    assert resolve_batchnorm("frozen", layer4) == "frozen"
    layer4[0].bn1.running_var.fill_(0.7)  # as in any trained network
    assert resolve_batchnorm("auto", layer4) == "frozen"
    assert resolve_batchnorm("train", layer4) == "train"
    with pytest.raises(ImgfinderError, match="batchnorm"):
        resolve_batchnorm("sometimes", layer4)


def test_reestimate_batchnorm_weights_batches_by_size_and_restores_when_closed():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    bn = net[1]
    bn.running_mean.fill_(5.0)
    x = torch.randn(7, 3, 2, 2) * 3 + 1
    runs = reestimate_batchnorm(net, [x[:4], x[4:]])  # unequal batches: 4 and 3
    assert next(runs) == 4
    runs.close()  # stopped early: the old statistics come back
    assert torch.all(bn.running_mean == 5.0) and bn.momentum == 0.1
    assert list(reestimate_batchnorm(net, [x[:4], x[4:]])) == [4, 7]
    with torch.no_grad():
        expected = net[0](x).mean(dim=(0, 2, 3))  # the mean over all 7, not of the 2 batches
    assert torch.allclose(bn.running_mean, expected, atol=1e-5) and bn.momentum == 0.1


def test_layer4_training_with_batchnorm_ends_with_precise_statistics(tmp_path, weights_file):
    dataset = make_classes(tmp_path / "ds", per_class=2)
    cfg = tiny_config(
        dataset, weights_file, train="layer4", epochs=2, views=2, batch_size=4, keep_cache=True
    )
    trainer = Trainer(cfg, resume=False, allow_download=False)
    assert trainer.batchnorm == "train"  # "auto" on a random-init backbone
    small = TrainConfig(str(dataset), ModelConfig(str(weights_file), device="cpu", input_size=32))
    with pytest.raises(ImgfinderError, match="at least 64"):
        Trainer(small, resume=False, allow_download=False)
    cancel = threading.Event()
    stages = []

    def stop_at_calibration(p):
        stages.append(p.stage)
        if p.stage == "calibrate":
            cancel.set()

    first = run(trainer.run(cancel), stop_at_calibration)
    assert first.cancelled and first.output is None and stages.count("calibrate") == 1
    assert torch.load(first.checkpoint, weights_only=True)["epoch"] == 2
    stages.clear()
    resumed = Trainer(cfg, resume=True, allow_download=False)
    result = run(resumed.run(threading.Event()), lambda p: stages.append(p.stage))
    assert "train" not in stages and stages.count("calibrate") == 2  # 6 images, batches of 4
    bundle = torch.load(result.output, weights_only=True)
    assert bundle["meta"]["batchnorm"] == "train"
    backbone = bundle["backbone"]
    # the saved statistics are exact averages over the clean views under the final weights
    cache = resumed.cache
    idx = cache.valid_indices()
    l3 = torch.from_numpy(cache.layer3_rows(idx, np.zeros(len(idx), np.int64))).float()
    conv1 = torch.nn.functional.conv2d(l3, backbone["layer4.0.conv1.weight"])
    expected = conv1.mean(dim=(0, 2, 3))
    assert torch.allclose(backbone["layer4.0.bn1.running_mean"], expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(expected, torch.zeros_like(expected))
    assert int(backbone["layer4.0.bn1.num_batches_tracked"]) == 2
    ex = Extractor(ModelConfig(str(result.output), None, "cpu", TEST_INPUT_SIZE))
    vec = ex.embed(dataset / "class1" / "0.jpg")
    assert vec.shape == (4096,) and np.isfinite(vec).all()


def test_unlabelled_mode_trains_instances(tmp_path, weights_file):
    root = tmp_path / "library"
    for i in range(4):
        make_jpeg(root / ("nested" if i % 2 else "") / f"p{i}.jpg", (80, 64), seed=70 + i)
    cfg = tiny_config(root, weights_file, unlabelled=True, epochs=2, views=3)
    result = run(train(cfg))
    assert result.classes == 4 and result.epochs_done == 2
    assert torch.load(result.output, weights_only=True)["meta"]["unlabelled"] is True
    with pytest.raises(ImgfinderError, match="views >= 2"):
        run(train(tiny_config(root, weights_file, unlabelled=True, views=1)))


def test_cli_train_writes_the_weights_into_the_data_dir(tmp_path, weights_file, capsys):
    dataset = make_classes(tmp_path / "ds", per_class=3)
    data = tmp_path / "data"
    args = [*cli_args(data, weights_file), "train", str(dataset), "--epochs", "2"]
    assert main([*args, "--views", "2", "--batch-size", "4", "-o", "mine"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    path = Path(out[-1])
    assert path == (data / "models" / "mine.pt").resolve() and path.exists()
    assert any(line.startswith("model id: fused-eca-r50/") for line in out)
    assert "ArcFace loss" in out[0] and "last-stage BatchNorm train" in out[0]  # default: layer4
    hint = f"use it with: imgfinder --weights {path} --input-size {TEST_INPUT_SIZE} index"
    assert any(line.startswith(hint) for line in out)
