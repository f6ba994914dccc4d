"""The real-scale loading paths (local path / hub id) exercised with tiny stand-ins saved to disk."""

import torch
from safetensors.torch import save_file

from processors import collate_sft
from tests.conftest import tiny_model_config
from vlrl.config import EncoderConfig
from vlrl.data.synth import generate as synth
from vlrl.models import ENCODERS, build_vlm, load_pretrained, save_pretrained

TINY_VIT = {"layers": 3, "width": 32, "head_width": 16, "patch_size": 8, "image_size": 32}


def test_open_clip_weights_from_a_local_file(tmp_path):
    from open_clip.model import CLIPVisionCfg, _build_vision_tower

    torch.manual_seed(0)
    src = _build_vision_tower(32, CLIPVisionCfg(**TINY_VIT))  # a whole tower, as a real checkpoint has
    # a full-CLIP style checkpoint: tower weights under "visual.", plus text weights to ignore
    state = {f"visual.{k}": v for k, v in src.state_dict().items()}
    state["text.token_embedding.weight"] = torch.zeros(3, 3)
    save_file(state, str(tmp_path / "clip.safetensors"))
    torch.manual_seed(1)
    loaded = ENCODERS.build("open_clip", EncoderConfig(arch=TINY_VIT, feature_layer=-2,
                                                        pretrained=str(tmp_path / "clip.safetensors")))
    x = torch.randn(2, 3, 32, 32)
    expected = src.forward_intermediates(x, indices=[1], output_fmt="NLC", intermediates_only=True)
    assert torch.equal(expected["image_intermediates"][0], loaded(x))
    assert len(loaded.tower.transformer.resblocks) == 2  # pruned after the feature layer


def hf_cfg(model_type):
    return {"model_type": model_type, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3,
            "num_attention_heads": 2, "image_size": 32, "patch_size": 8}


def test_hf_vision_from_a_local_checkpoint_matches_its_hidden_states(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    d = dict(hf_cfg("clip_vision_model"))
    d.pop("model_type")
    ref = CLIPVisionModel(CLIPVisionConfig(**d)).eval()
    ref.save_pretrained(tmp_path / "clip")
    enc = ENCODERS.build("hf_vision", EncoderConfig(name="hf_vision", arch=str(tmp_path / "clip"),
                                                    pretrained=str(tmp_path / "clip"), feature_layer=-2)).eval()
    x = torch.randn(2, 3, 32, 32)
    expected = ref(pixel_values=x, output_hidden_states=True).hidden_states[-2][:, 1:]  # drop CLS
    assert torch.allclose(enc(x), expected, atol=1e-6)


def test_vlm_with_siglip_and_pretrained_llm_from_local_paths(tmp_path):
    """LLM + tokenizer from a local directory (as a hub download would be), <img> added and embeddings
    resized; a SigLIP tower with pixel-shuffle; every trainable parameter gets a gradient; round trip."""
    torch.manual_seed(0)
    base, proc = build_vlm(tiny_model_config())
    base.llm.save_pretrained(tmp_path / "llm")
    proc.tokenizer.save_pretrained(tmp_path / "llm")
    cfg = tiny_model_config(f"model.llm.path={tmp_path / 'llm'}", "model.llm.config=null",
                            "model.tokenizer.build=null", "model.tokenizer.image_token=<img>",
                            "model.encoder.name=hf_vision", "model.projector.name=pixel_shuffle",
                            "model.encoder.feature_layer=-2")
    cfg.encoder.arch = hf_cfg("siglip_vision_model")
    model, proc2 = build_vlm(cfg)
    assert len(proc2.tokenizer) == len(proc.tokenizer) + 1
    assert model.llm.get_input_embeddings().weight.shape[0] == len(proc2.tokenizer)
    assert torch.equal(model.llm.get_input_embeddings().weight[:-1], base.llm.get_input_embeddings().weight)
    assert proc2.num_image_tokens == 4 and proc2.image_transform.resize_mode == "squash"
    samples = synth("shapes", 2) + synth("arithmetic", 1)
    batch = collate_sft([proc2.encode(s, s.response) for s in samples], proc2.pad_token_id)
    model.train()
    model(batch).loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    save_pretrained(model, proc2, tmp_path / "vlm")
    again, _ = load_pretrained(tmp_path / "vlm")
    model.eval(), again.eval()
    assert torch.equal(model(batch).logits, again(batch).logits)
