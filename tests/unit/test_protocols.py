"""Every registered encoder and projector honours its protocol."""

import torch

from vlrl.config import EncoderConfig
from vlrl.models import ENCODERS, PROJECTORS
from vlrl.models.encoders.base import VisionEncoder

TINY_ARCH = {
    "open_clip": {"layers": 2, "width": 32, "head_width": 16, "patch_size": 8, "image_size": 32},
    "hf_vision": {"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                  "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
}


def test_every_encoder_honours_the_protocol():
    assert set(TINY_ARCH) <= set(ENCODERS.keys())
    for name in ENCODERS.keys():
        if name not in TINY_ARCH:
            continue  # plugins registered by other tests
        enc = ENCODERS.build(name, EncoderConfig(name=name, arch=TINY_ARCH[name]))
        assert isinstance(enc, VisionEncoder)
        t = enc.image_transform()
        x = torch.randn(3, 3, t.size, t.size)
        feats = enc(x)
        assert feats.shape == (3, enc.num_tokens, enc.hidden_size), name
        assert enc.grid_size[0] * enc.grid_size[1] == enc.num_tokens
        # export_config rebuilds the same architecture with no weights source
        again = ENCODERS.build(name, enc.export_config())
        assert again.export_config().pretrained is None
        assert sum(p.numel() for p in again.parameters()) == sum(p.numel() for p in enc.parameters())
        enc.freeze(True)
        assert not any(p.requires_grad for p in enc.parameters())


def test_every_projector_honours_the_protocol():
    for name in PROJECTORS.keys():
        proj = PROJECTORS.build(name, in_dim=24, out_dim=40, num_in_tokens=16)
        y = proj(torch.randn(2, 16, 24))
        assert y.shape == (2, proj.num_tokens, 40), name


def test_pixel_shuffle_reduces_tokens_and_keeps_neighbours_together():
    proj = PROJECTORS.build("pixel_shuffle", in_dim=1, out_dim=4, num_in_tokens=16, factor=2)
    assert proj.num_tokens == 4
    # grid value = its index; the first merged token must gather patches (0,0),(0,1),(1,0),(1,1) = 0,1,4,5
    proj.net = torch.nn.Identity()  # look at the merge itself
    merged = proj(torch.arange(16.0).view(1, 16, 1))  # 4x4 grid, row-major
    assert merged[0, 0].tolist() == [0, 1, 4, 5]
    assert merged[0, 3].tolist() == [10, 11, 14, 15]


def test_losses_and_rewards_registries_honour_their_protocols():
    from vlrl.algos import LOSSES, LossOutput
    from vlrl.rewards import REWARDS, RewardResult
    from vlrl.types import Sample

    assert {"kimi", "grpo", "rloo", "dpo"} <= set(LOSSES.keys()) and {"exact_match", "math"} <= set(REWARDS.keys())
    tl = torch.randn(4, 3, requires_grad=True)
    for name in LOSSES.keys():
        out = LOSSES.build(name, token_logp=tl, ref_token_logp=tl.detach(), mask=torch.ones(4, 3, dtype=torch.bool),
                           rewards=torch.tensor([1.0, 0.0, 0.0, 1.0]), group=torch.tensor([0, 0, 1, 1]))
        assert isinstance(out, LossOutput) and out.loss.ndim == 0 and out.loss.requires_grad, name
    s = Sample(id="s", question="q", answer="4")
    class FakeCritic:  # a Predictor stand-in: the critic's reply
        def answer(self, prompt, images, max_new_tokens):
            return 'It matches. {"correct": true}'

    needs = {"critic": {"model": FakeCritic()}, "router": {"default": {"name": "math"}}}
    for name in REWARDS.keys():
        r = REWARDS.build(name, **needs.get(name, {}))("so... Answer: 4", s)
        assert isinstance(r, RewardResult) and isinstance(r.reward, float)


def test_sft_loss_by_hand():
    import math
    from vlrl.algos.sft import sft_loss
    # uniform logits over V=4: every labelled token costs log 4; two labelled targets -> mean log 4
    out = sft_loss(logits=torch.zeros(1, 3, 4), labels=torch.tensor([[-100, 1, 3]]))
    assert abs(out.loss.item() - math.log(4)) < 1e-6 and out.metrics["tokens"] == 2
    # a confident correct prediction at the one labelled position: logit 10 on the target, 0 elsewhere
    logits = torch.zeros(1, 2, 3)
    logits[0, 0, 2] = 10.0
    out = sft_loss(logits=logits, labels=torch.tensor([[-100, 2]]))
    expected = -(10 - math.log(math.exp(10) + 2))
    assert abs(out.loss.item() - expected) < 1e-6


def test_unknown_encoder_and_projector_errors_list_known_keys():
    import pytest
    from tests.conftest import tiny_model_config
    from vlrl.models import build_vlm
    from vlrl.registry import RegistryError

    with pytest.raises(RegistryError, match="unknown encoder 'clip_vit'.*hf_vision, open_clip"):
        build_vlm(tiny_model_config("model.encoder.name=clip_vit"))
    with pytest.raises(RegistryError, match="unknown projector 'qformer'.*linear, mlp, pixel_shuffle"):
        build_vlm(tiny_model_config("model.projector.name=qformer"))
