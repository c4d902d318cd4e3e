"""CBAM attention and GeM pooling heads: plumbing with random init (no quality claims)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from imgfinder.core import explain
from imgfinder.core.extract import Extractor, ModelConfig, head_tag
from imgfinder.core.model import CBAM, FusedECA, GeM
from imgfinder.core.modelspec import describe_model_id
from imgfinder.errors import ImgfinderError


def test_untrained_cbam_is_plain_average_pooling():
    torch.manual_seed(0)
    fmap = torch.rand(2, 32, 5, 4)
    cbam = CBAM(32)
    assert torch.allclose(cbam.channel_weights(fmap), torch.full((2, 32), 0.5))
    w = cbam.channel_weights(fmap)
    assert torch.allclose(cbam.spatial_weights(fmap, w), torch.full((2, 5, 4), 0.5))
    model = FusedECA("efficientnet-lite0", attention="cbam").eval()
    out = model.fuse(fmap.repeat(1, 40, 1, 1))  # 1280 channels
    avg = F.normalize(out.fmap.mean(dim=(2, 3)), dim=1)
    assert torch.allclose(out.descriptor[:, :1280] * np.sqrt(2), avg, atol=1e-5)
    assert out.spatial.shape == (2, 5, 4)


def test_cbam_is_trainable_from_its_zero_init():
    torch.manual_seed(0)
    cbam = CBAM(16)
    fmap = torch.rand(3, 16, 4, 4)
    (cbam(fmap) * torch.randn(3, 16, 4, 4)).sum().backward()
    assert cbam.mlp[2].weight.grad.abs().sum() > 0
    assert cbam.spatial.weight.grad.abs().sum() > 0


def test_gem_between_average_and_max_and_learnable():
    fmap = torch.rand(2, 8, 3, 3) + 0.01
    gem = GeM()
    g = gem(fmap)
    assert torch.all(g >= fmap.mean(dim=(2, 3)) - 1e-6)
    assert torch.all(g <= fmap.amax(dim=(2, 3)) + 1e-6)
    assert float(gem.p.detach()) == 3.0
    g.sum().backward()
    assert gem.p.grad is not None and float(gem.p.grad.abs()) > 0


def test_heads_have_their_own_model_ids_and_descriptions(weights_file):
    cfg = ModelConfig(
        weights=str(weights_file), device="cpu", input_size=64, attention="cbam", pooling="gem"
    )
    ex = Extractor(cfg)
    assert ex.model_id.split("/")[2] == "cbam0-gem3"
    out = ex.forward_maps([np.full((64, 64, 3), 90, np.uint8)])
    assert out.descriptor.shape == (1, 4096) and out.spatial.shape == (1, 2, 2)
    assert out.gem_p == pytest.approx(3.0)
    ids = {
        (att, pool): ex.spec.model_id(ex.model_id.split("/")[1], head_tag(None, att, pool), 64)
        for att, pool in (("eca", "max"), ("cbam", "max"), ("eca", "gem"), ("cbam", "gem"))
    }
    assert len(set(ids.values())) == 4
    assert ids[("eca", "max")].split("/")[2] == "eca0"
    assert ids[("cbam", "gem")].split("/")[2] == "cbam0-gem3"
    assert "untrained CBAM head" in describe_model_id(ids[("cbam", "max")])
    assert "GeM p = 3" in describe_model_id(ids[("eca", "gem")])


def test_trained_head_state_round_trips_and_names_itself():
    torch.manual_seed(0)
    a = FusedECA("efficientnet-lite0", attention="cbam", pooling="gem")
    with torch.no_grad():
        a.eca.spatial.weight.normal_()
        a.gem.p.fill_(4.5)
    state = a.head_state()
    assert "gem.p" in state and any(k.startswith("mlp.") for k in state)
    b = FusedECA("efficientnet-lite0", attention="cbam", pooling="gem")
    b.load_head(state)
    assert float(b.gem.p.detach()) == 4.5
    assert head_tag(state).startswith("cbam-") and head_tag(state).endswith("-gem")
    with pytest.raises(RuntimeError, match="GeM"):
        FusedECA("efficientnet-lite0", attention="cbam").load_head(state)


def test_unknown_head_kind_is_a_clear_error(weights_file):
    with pytest.raises(ImgfinderError, match="attention"):
        ModelConfig(weights=str(weights_file), attention="se").attention_kind  # noqa: B018


@pytest.mark.parametrize("att,pool", [("cbam", "max"), ("eca", "gem"), ("cbam", "gem")])
def test_heatmaps_stay_an_exact_decomposition(att, pool):
    torch.manual_seed(3)
    model = FusedECA("efficientnet-lite0", attention=att, pooling=pool).eval()
    with torch.no_grad():
        if att == "cbam":  # a trained-looking spatial attention, not the constant 1/2
            model.eca.spatial.weight.normal_(0, 0.5)
        fmap = torch.rand(2, 1280, 3, 3)
        out = model.fuse(fmap)
    q, r = (explain.from_output(out, i, (64, 64)) for i in (0, 1))
    if att == "cbam":
        assert explain.spatial_attention(q).shape == (3, 3)
        assert float(explain.spatial_attention(q).std()) > 0
    else:
        assert explain.spatial_attention(q) is None
    cos = float(out.descriptor[0] @ out.descriptor[1])
    expl = explain.match_maps(q, r, "fused")
    assert expl.score == pytest.approx(cos, abs=1e-5)
    assert expl.query_map.sum() == pytest.approx(cos, abs=1e-5)
    assert expl.result_map.sum() == pytest.approx(cos, abs=1e-5)
    mean = np.full(2560, 0.01)
    centred = explain.match_maps(q, r, "fused", mean=mean)
    assert centred.query_map.sum() == pytest.approx(centred.score, abs=1e-6)


def test_arcface_trainer_trains_cbam_and_gem(tmp_path, weights_file):
    from imgfinder import paths
    from imgfinder.core.library import run
    from imgfinder.core.train import TrainConfig, train
    from tests.imgutil import make_jpeg

    colours = [(200, 60, 60), (60, 180, 70), (70, 80, 210)]
    for c, colour in enumerate(colours):
        for i in range(3):
            make_jpeg(tmp_path / "set" / f"c{c}" / f"{i}.jpg", (96, 80), colour, seed=10 * c + i)
    model = ModelConfig(
        weights=str(weights_file), device="cpu", input_size=64, attention="cbam", pooling="gem"
    )
    cfg = TrainConfig(str(tmp_path / "set"), model, epochs=4, views=2, batch_size=4, train="eca")
    paths.set_data_dir(tmp_path / "data")
    try:
        result = run(train(cfg))
    finally:
        paths.set_data_dir(None)
    assert result.epoch_loss[-1] < result.epoch_loss[0]
    head = torch.load(result.output, weights_only=True)["head"]
    assert float(head["gem.p"]) != 3.0 and float(head["mlp.2.weight"].abs().sum()) > 0
    # the head file alone says it is CBAM + GeM: no --attention / --pooling needed to load it
    ex = Extractor(ModelConfig(weights=str(weights_file), head=str(result.output), device="cpu",
                               input_size=64))  # fmt: skip
    assert ex.model_id.split("/")[2] == head_tag(head) and "cbam-" in ex.model_id
    assert float(ex.model.gem.p.detach()) == pytest.approx(float(head["gem.p"]))
