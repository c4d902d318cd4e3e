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
