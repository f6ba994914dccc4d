import sys
import textwrap

import pytest
import torch

from vlrl.registry import Registry, RegistryError


def test_decorator_registration_and_lookup():
    reg = Registry("widget", "vlrl.test_widgets_none")

    @reg.register("a")
    def build_a():
        return "A"

    assert reg.build("a") == "A"
    assert "a" in reg and reg.keys() == ["a"]


def test_duplicate_key_is_an_error():
    reg = Registry("widget", "vlrl.test_widgets_none")
    reg.add("a", lambda: 1)
    with pytest.raises(RegistryError, match="already registered"):
        reg.add("a", lambda: 2)


def test_unknown_key_lists_known_keys():
    reg = Registry("widget", "vlrl.test_widgets_none")
    reg.add("alpha", lambda: 1)
    reg.add("beta", lambda: 2)
    with pytest.raises(RegistryError) as e:
        reg.get("gamma")
    assert "unknown widget 'gamma'" in str(e.value) and "alpha, beta" in str(e.value)


def install_fake_plugin(tmp_path, monkeypatch):
    """Install a third-party package the way pip would: a module plus a dist-info with entry_points.txt."""
    pkg = tmp_path / "fake_vlrl_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn
        from processors.image import ImageTransform
        from vlrl.config import EncoderConfig
        from vlrl.models.encoders.base import VisionEncoder

        class ConvEncoder(VisionEncoder):
            # a 4x4-patch conv 'encoder': (B, 3, 16, 16) -> (B, 16, 24)
            def __init__(self, cfg):
                super().__init__()
                self.cfg = cfg
                self.conv = nn.Conv2d(3, 24, kernel_size=4, stride=4)
                self.hidden_size, self.num_tokens, self.grid_size = 24, 16, (4, 4)
            def forward(self, pixel_values):
                return self.conv(pixel_values).flatten(2).transpose(1, 2)
            def image_transform(self):
                return ImageTransform(size=16, resize_mode="squash")
            def export_config(self):
                return EncoderConfig(name="fake_conv", arch=None)

        def build(cfg):
            return ConvEncoder(cfg)
    """))
    dist = tmp_path / "fake_vlrl_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-vlrl-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[vlrl.encoders]\nfake_conv = fake_vlrl_plugin:build\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_entry_point_plugin_builds_a_working_model(tmp_path, monkeypatch):
    from processors.collate import collate_sft
    from tests.conftest import tiny_model_config
    from vlrl.data.synth import generate
    from vlrl.models import ENCODERS, build_vlm

    install_fake_plugin(tmp_path, monkeypatch)
    ENCODERS._entry_points_loaded = False  # a fresh process would scan on first miss; simulate that
    try:
        cfg = tiny_model_config("model.encoder.name=fake_conv", "model.encoder.arch=null")
        model, proc = build_vlm(cfg)
        assert "fake_conv" in ENCODERS.keys() and "fake-vlrl-plugin" in ENCODERS.origin("fake_conv")
        assert proc.num_image_tokens == 16 and proc.image_transform.size == 16
        samples = generate("shapes", 2) + generate("arithmetic", 1)
        batch = collate_sft([proc.encode(s, s.response) for s in samples], proc.pad_token_id)
        loss = model(batch).loss
        loss.backward()
        assert torch.isfinite(loss) and model.encoder.conv.weight.grad.abs().sum() > 0
    finally:
        ENCODERS._builders.pop("fake_conv", None)
        ENCODERS._origin.pop("fake_conv", None)
        sys.modules.pop("fake_vlrl_plugin", None)
