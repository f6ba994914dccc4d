"""LLaVA in and out, on tiny random transformers checkpoints built here (nothing downloaded): imported
logits equal transformers' for the same pixels and ids, greedy generations are token-identical, and an
export loads back in transformers with the same logits and in vlrl with the same weights."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from processors import collate_generation, collate_scoring
from processors.tokenizer import build_tokenizer
from vlrl.models import SamplingParams, generate, load_pretrained
from vlrl.models.llava import export_llava, import_llava
from vlrl.types import Sample

CORPUS = ["How many shapes are there? Answer: 3", "What is 4 + 5? Answer: 9", "red blue circle square left"] * 20


def _llava_dir(tmp_path, family: str):
    """A random LlavaForConditionalGeneration (CLIP + Llama, or SigLIP + Qwen2) with its tokenizer."""
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, Qwen2Config, SiglipImageProcessor, SiglipVisionConfig)

    tok = build_tokenizer(CORPUS, vocab_size=300)
    vision_kw = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                     image_size=32, patch_size=8)
    text_kw = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, vocab_size=len(tok) + 6, max_position_embeddings=256)  # padded table
    if family == "clip":
        vision, text, strategy, tie = CLIPVisionConfig(**vision_kw), LlamaConfig(**text_kw), "default", False
    else:
        vision, text, strategy, tie = SiglipVisionConfig(**vision_kw), Qwen2Config(**text_kw), "full", True
    text.tie_word_embeddings = tie
    cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
                      vision_feature_layer=-2, vision_feature_select_strategy=strategy, image_seq_length=16,
                      tie_word_embeddings=tie)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(cfg).eval()
    d = tmp_path / f"llava-{family}"
    model.save_pretrained(str(d))
    tok.save_pretrained(str(d))
    if family == "clip":  # the checkpoint's own preprocessing, as hub LLaVAs ship it
        images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    else:
        images = SiglipImageProcessor(size={"height": 32, "width": 32})
    images.save_pretrained(str(d))
    return d, model


def _samples():
    img = lambda c: Image.new("RGB", (32, 32), c)  # noqa: E731
    return [Sample(id="text", question="What is 4 + 5?"),
            Sample(id="one", question="How many shapes are there?", images=[img((200, 10, 10))]),
            Sample(id="two", question="<image> left, <image> right: same?", images=[img((0, 0, 250)), img((9, 99, 9))])]


def _same_logits(ours, theirs, batch) -> float:
    """Max |difference| of the logits at every real (non-padding) position of a right-padded batch."""
    with torch.no_grad():
        a = ours(batch).logits
        b = theirs(input_ids=batch.input_ids, pixel_values=batch.pixel_values,
                   attention_mask=batch.attention_mask).logits
    real = batch.attention_mask.bool()
    return float((a[real] - b[real]).abs().max())


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_imported_llava_has_transformers_logits_and_greedy_tokens(tmp_path, family):
    path, theirs = _llava_dir(tmp_path, family)
    ours, proc = load_pretrained(path)  # every stage's init_from and `vlrl infer --model` go through this
    ours.eval()
    assert proc.num_image_tokens == 16 and proc.image_token_id == theirs.config.image_token_index
    batch = collate_scoring([proc.encode(s, "Answer: 9") for s in _samples()], proc.pad_token_id)
    assert batch.image_counts == [0, 1, 2]
    assert _same_logits(ours, theirs, batch) < 1e-5
    for s in _samples():  # one prompt at a time: no padding, so transformers' default positions agree
        enc = collate_generation([proc.encode(s)], proc.pad_token_id)
        mine = generate(ours, enc, SamplingParams(max_new_tokens=12), proc.eos_token_id).tokens[0]
        with torch.no_grad():
            pixels = {} if enc.pixel_values is None else {"pixel_values": enc.pixel_values}
            ref = theirs.generate(input_ids=enc.input_ids, attention_mask=enc.attention_mask, **pixels,
                                  max_new_tokens=12, do_sample=False,
                                  suppress_tokens=[proc.image_token_id],  # vlrl never samples the placeholder
                                  eos_token_id=proc.eos_token_id, pad_token_id=proc.pad_token_id)
        assert mine == ref[0, enc.input_ids.shape[1]:].tolist()[: len(mine)], s.id


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_imported_llava_preprocesses_images_with_its_own_image_processor(tmp_path, family):
    from transformers import AutoImageProcessor

    from processors.image import HFImageTransform

    path, _ = _llava_dir(tmp_path, family)
    _, proc = load_pretrained(path)
    assert isinstance(proc.image_transform, HFImageTransform)
    img = Image.new("RGB", (50, 40), (10, 200, 30))  # not square: resize (and crop) do something
    want = AutoImageProcessor.from_pretrained(str(path))(images=img, return_tensors="pt")["pixel_values"]
    got = proc.encode(Sample(id="x", question="?", images=[img])).pixel_values
    assert torch.equal(got, want)
    proc.save_pretrained(tmp_path / "saved")  # saved with the model, reloaded as it was
    again = type(proc).from_pretrained(tmp_path / "saved")
    assert torch.equal(again.encode(Sample(id="x", question="?", images=[img])).pixel_values, want)


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_export_round_trip_keeps_weights_and_logits(tmp_path, family):
    from transformers import LlavaForConditionalGeneration

    path, _ = _llava_dir(tmp_path, family)
    ours, proc = import_llava(path)
    batch = collate_scoring([proc.encode(s, "Answer: 9") for s in _samples()], proc.pad_token_id)
    with torch.no_grad():
        before = ours.eval()(batch).logits
    out = export_llava(ours, proc, tmp_path / "exported")
    with torch.no_grad():  # exporting leaves the model as it was (it once edited the LLM's shared config)
        assert torch.equal(ours(batch).logits, before)
    again, _ = import_llava(out)
    a, b = ours.state_dict(), again.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    hf = LlavaForConditionalGeneration.from_pretrained(str(out)).eval()  # plain transformers, no vlrl involved
    assert _same_logits(ours.eval(), hf, batch) < 1e-5


def test_the_embedded_default_exports_with_its_open_clip_tower_as_clip(tiny, tmp_path):
    """open_clip's ViT becomes transformers' CLIP vision tower (fused qkv split, names mapped): the
    exported model's logits are vlrl's, and the README's transformers code answers like vlrl."""
    from transformers import LlavaForConditionalGeneration

    from vlrl import Predictor
    from vlrl.models import save_pretrained

    model, proc = tiny
    save_pretrained(model, proc, tmp_path / "tiny")
    ours = Predictor.load(str(tmp_path / "tiny"), device="cpu")
    out = export_llava(ours.model, ours.processor, tmp_path / "hf")
    hf = LlavaForConditionalGeneration.from_pretrained(str(out)).eval()
    batch = collate_scoring([ours.processor.encode(s, "Answer: 9") for s in _samples()], ours.processor.pad_token_id)
    assert _same_logits(ours.model, hf, batch) < 1e-5
    image = tmp_path / "scene.png"
    Image.new("RGB", (48, 48), (200, 10, 10)).save(image)  # the tiny default's image size
    scope: dict = {}
    exec(readme_snippet(str(out), str(image)), scope)
    assert scope["answer"] == ours.answer("How many shapes are there?", images=[str(image)], max_new_tokens=12)


def test_models_llava_cannot_represent_are_refused_by_name(tmp_path):
    from conftest import tiny_model_config

    from vlrl.models import build_vlm

    model, proc = build_vlm(tiny_model_config("model.projector.name=linear"))
    with pytest.raises(ValueError, match="model.projector 'linear'.*no LLaVA equivalent"):
        export_llava(model, proc, tmp_path / "x")
    path, hf = _llava_dir(tmp_path, "clip")
    cfg = hf.config
    cfg.vision_feature_layer = [-2, -1]
    cfg.save_pretrained(str(path))
    with pytest.raises(ValueError, match="vision_feature_layer"):
        import_llava(path)


def test_vlrl_export_and_infer_from_the_command_line(tiny, tmp_path, capsys):
    """`vlrl infer --model` takes a LLaVA checkpoint; `vlrl export` writes one, or names what it cannot."""
    from vlrl.cli import main

    path, _ = _llava_dir(tmp_path, "clip")
    img = tmp_path / "red.png"
    Image.new("RGB", (32, 32), (200, 10, 10)).save(img)
    assert main(["infer", "--model", str(path), "--image", str(img), "--question", "How many?",
                 "--max-new-tokens", "4", "--no-stream", "--device", "cpu"]) == 0
    assert main(["export", str(path), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "config.json").is_file() and "transformers LLaVA" in capsys.readouterr().out
    from conftest import tiny_model_config

    from vlrl.models import build_vlm, save_pretrained

    save_pretrained(*build_vlm(tiny_model_config("model.projector.name=linear")), tmp_path / "ps")
    assert main(["export", str(tmp_path / "ps"), "--out", str(tmp_path / "no")]) == 2
    assert "model.projector 'linear'" in capsys.readouterr().err


def readme_snippet(exported: str, image: str) -> str:
    """The README's plain-transformers code block, with this test's paths (and 12 new tokens)."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = readme.split("## Use your model elsewhere", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    assert '"runs/x/hf"' in code and '"scene.png"' in code and "print(processor.decode" in code
    return (code.replace('"runs/x/hf"', repr(exported)).replace('"scene.png"', repr(image))
            .replace("max_new_tokens=64", "max_new_tokens=12").replace("print(processor.decode", "answer = (processor.decode"))


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_the_readme_transformers_code_answers_like_vlrl(tmp_path, family):
    """The README's plain-transformers code on an exported model gives vlrl's greedy answer, token for token."""
    from vlrl import Predictor

    path, _ = _llava_dir(tmp_path, family)
    image = tmp_path / "scene.png"
    Image.new("RGB", (32, 32), (200, 10, 10)).save(image)
    ours = Predictor.load(str(path), device="cpu")
    out = export_llava(ours.model, ours.processor, tmp_path / "hf")
    scope: dict = {}
    exec(readme_snippet(str(out), str(image)), scope)
    mine = ours.answer("How many shapes are there?", images=[str(image)], max_new_tokens=12)
    assert scope["answer"] == mine  # the same text as `vlrl infer`
    sample = Sample(id="q", question="How many shapes are there?", images=[str(image)])
    assert scope["inputs"]["input_ids"].tolist()[0] == ours.processor.encode(sample).input_ids
    enc = collate_generation([ours.processor.encode(sample)], ours.processor.pad_token_id)
    ids = generate(ours.model, enc, SamplingParams(max_new_tokens=12), ours.processor.eos_token_id).tokens[0]
    theirs = scope["out"][0, enc.input_ids.shape[1]:].tolist()
    assert len(ids) > 0 and theirs[: len(ids)] == ids  # token for token
    # a text-only question through the same transformers objects
    model, processor = scope["model"], scope["processor"]
    prompt = processor.tokenizer.apply_chat_template([{"role": "user", "content": "What is 4 + 5?"}],
                                                     tokenize=False, add_generation_prompt=True)
    inputs = processor(text=prompt, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    text = processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert text == ours.answer("What is 4 + 5?", max_new_tokens=12)


def test_a_stage_copy_that_llava_cannot_hold_is_reported_not_fatal(tmp_path, capsys):
    from conftest import tiny_model_config

    from vlrl.models import build_vlm
    from vlrl.models.llava import save_llava_copy

    assert save_llava_copy(*build_vlm(tiny_model_config("model.projector.name=linear")), tmp_path / "hf") is None
    assert "not written as a transformers LLaVA: export: model.projector 'linear'" in capsys.readouterr().err
    assert not (tmp_path / "hf").exists()


def test_lora_adapter_alone_applies_with_peft_to_the_llava_it_came_from(tmp_path):
    """The adapter, exported alone in peft's format, on the original transformers LLaVA gives the vlrl
    LoRA model's logits."""
    from peft import PeftModel
    from transformers import LlavaForConditionalGeneration

    from vlrl.config import LoRAConfig
    from vlrl.models.llava import export_lora_adapter
    from vlrl.models.lora import add_lora

    path, _ = _llava_dir(tmp_path, "clip")
    ours, proc = import_llava(path)
    add_lora(ours, LoRAConfig(r=4, alpha=8))
    torch.manual_seed(1)
    for n, p in ours.named_parameters():
        if ".lora_B." in n:  # trained adapters are not zero
            p.data.normal_(0, 0.1)
    out = export_lora_adapter(ours, tmp_path / "adapter", base=str(path))
    hf = PeftModel.from_pretrained(LlavaForConditionalGeneration.from_pretrained(str(path)), str(out)).eval()
    batch = collate_scoring([proc.encode(s, "Answer: 9") for s in _samples()], proc.pad_token_id)
    with torch.no_grad():
        a = ours.eval()(batch).logits
        b = hf(input_ids=batch.input_ids, pixel_values=batch.pixel_values, attention_mask=batch.attention_mask).logits
    real = batch.attention_mask.bool()
    assert float((a[real] - b[real]).abs().max()) < 1e-5
    with torch.no_grad():  # and the adapters matter
        plain = LlavaForConditionalGeneration.from_pretrained(str(path)).eval()(
            input_ids=batch.input_ids, pixel_values=batch.pixel_values, attention_mask=batch.attention_mask).logits
    assert float((plain[real] - a[real]).abs().max()) > 1e-3
