import io

import pytest
import torch
from PIL import Image

from processors import ImageLoadError, PromptTooLongError, collate_generation, collate_scoring, collate_sft, load_image
from processors.chat import PlaceholderError
from processors.collate import IGNORE_INDEX
from vlrl.types import Sample


def img(color=(255, 0, 0), size=32, mode="RGB"):
    return Image.new("RGB", (size, size), color).convert(mode)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "CMYK", "I;16"])
def test_every_mode_becomes_rgb(mode, tmp_path):
    path = tmp_path / f"x.{'tiff' if mode in ('CMYK', 'I;16') else 'png'}"
    img(mode=mode).save(path)
    out = load_image(str(path))
    assert out.mode == "RGB" and out.size == (32, 32)


def test_transparent_pixels_become_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert load_image(rgba).getpixel((0, 0)) == (255, 255, 255)


def test_missing_and_corrupt_images_name_file_and_sample(tmp_path):
    with pytest.raises(ImageLoadError, match=r"nope\.png.*sample 's7'.*does not exist"):
        load_image(str(tmp_path / "nope.png"), sample_id="s7")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageLoadError, match=r"bad\.png.*sample 's8'.*corrupt"):
        load_image(str(bad), sample_id="s8")
    buf = io.BytesIO()
    img().save(buf, format="PNG")
    with pytest.raises(ImageLoadError, match="corrupt"):  # truncated data is an error, not a grey image
        load_image(buf.getvalue()[:60], sample_id="s9")


def test_placeholders_expand_per_image(tiny):
    _, proc = tiny
    n = proc.num_image_tokens
    for k in (0, 1, 2):
        s = Sample(id=f"k{k}", question="How many?", images=[img()] * k)
        enc = proc.encode(s)
        assert enc.input_ids.count(proc.image_token_id) == k * n
        assert enc.num_images == k
        assert (enc.pixel_values is None) == (k == 0)
        if k:
            size = proc.image_transform.size
            assert enc.pixel_values.shape == (k, 3, size, size)


def test_explicit_placeholder_positions_and_mismatch(tiny):
    _, proc = tiny
    s = Sample(id="two", question="Left <image> right <image>: same?", images=[img(), img((0, 0, 255))])
    ids = proc.encode(s).input_ids
    first = ids.index(proc.image_token_id)
    assert ids[first : first + proc.num_image_tokens] == [proc.image_token_id] * proc.num_image_tokens
    with pytest.raises(PlaceholderError, match=r"sample 'bad'.*1 '<image>' placeholder.*2 image"):
        proc.encode(Sample(id="bad", question="only <image> here", images=[img(), img()]))


def test_prompt_too_long_is_an_error_never_a_truncation(tiny):
    _, proc = tiny
    s = Sample(id="long", question="one two three " * 200)
    with pytest.raises(PromptTooLongError, match="sample 'long'"):
        proc.encode(s)


def test_collate_mixed_batch_keeps_per_sample_image_counts(tiny):
    _, proc = tiny
    samples = [Sample(id="t", question="What is 1 + 1?"),
               Sample(id="one", question="How many?", images=[img()]),
               Sample(id="two", question="How many?", images=[img(), img((0, 255, 0))])]
    enc = [proc.encode(s, "Answer: 2") for s in samples]
    b = collate_sft(enc, proc.pad_token_id)
    assert b.image_counts == [0, 1, 2] and b.pixel_values.shape[0] == 3
    assert torch.equal(b.pixel_values[1], enc[2].pixel_values[0])  # sample order kept
    for i, e in enumerate(enc):
        # labels exactly on the response tokens (which end with EOS), ignored on prompt and padding
        labels = b.labels[i][b.labels[i] != IGNORE_INDEX].tolist()
        assert labels == e.input_ids[e.prompt_len :] and labels[-1] == proc.eos_token_id
    text_only = collate_sft(enc[:1], proc.pad_token_id)
    assert text_only.pixel_values is None and text_only.image_counts == [0]  # no blank image fabricated



def test_rows_and_split_by_length_keep_each_row_with_its_images_and_labels(tiny):
    _, proc = tiny
    samples = [Sample(id="long", question="What is 12 + 30 + 7 + 8?", images=[img()]),
               Sample(id="t", question="1 + 1?"),
               Sample(id="two", question="How many?", images=[img(), img((0, 255, 0))]),
               Sample(id="mid", question="What is 2 + 3?")]
    enc = [proc.encode(s, r) for s, r in zip(samples, ["Answer: 57 since 12 + 30 = 42", "Answer: 2", "Answer: 2", "Answer: 5"])]
    b = collate_sft(enc, proc.pad_token_id)
    sub = b.rows([2, 1])
    assert sub.sample_ids == ["two", "t"] and sub.image_counts == [2, 0] and sub.pixel_values.shape[0] == 2
    assert torch.equal(sub.pixel_values, enc[2].pixel_values)
    assert sub.input_ids.shape[1] == max(len(enc[2].input_ids), len(enc[1].input_ids)) < b.input_ids.shape[1]
    for part in b.split_by_length(2):
        assert part.input_ids.shape[1] == int(part.attention_mask.sum(-1).max())  # trimmed to its longest row
        for j, sid in enumerate(part.sample_ids):
            e = enc[[s.id for s in samples].index(sid)]
            n = len(e.input_ids)
            assert part.input_ids[j, :n].tolist() == e.input_ids
            assert torch.equal(part.labels[j, :n], b.labels[b.sample_ids.index(sid), :n])
    parts = b.split_by_length(2)
    by_length = [samples[i].id for i in sorted(range(4), key=lambda i: len(enc[i].input_ids))]
    assert [len(p) for p in parts] == [2, 2] and parts[0].sample_ids + parts[1].sample_ids == by_length
    assert sorted(i for p in parts for i in p.sample_ids) == sorted(b.sample_ids)
    assert sum(p.pixel_values.shape[0] for p in parts if p.pixel_values is not None) == 3
    with pytest.raises(ValueError):
        b.split_by_length(5)

def test_generation_batches_are_left_padded_and_scoring_masks_responses(tiny):
    _, proc = tiny
    a = proc.encode(Sample(id="a", question="What is 1 + 1?"))
    b = proc.encode(Sample(id="b", question="How many shapes are there?", images=[img()]))
    g = collate_generation([a, b], proc.pad_token_id)
    assert g.attention_mask[:, -1].tolist() == [1, 1]  # every row ends at the last column
    assert g.attention_mask[0, 0] == 0 and g.input_ids[0, -len(a.input_ids):].tolist() == a.input_ids
    s = collate_scoring([proc.encode(Sample(id="a", question="hi"), "Answer: 3")], proc.pad_token_id)
    assert s.response_mask[0].sum() == len(proc.tokenize("Answer: 3")) + 1


def test_processor_round_trip(tiny, tmp_path):
    from processors import MultimodalProcessor
    _, proc = tiny
    proc.save_pretrained(tmp_path)
    again = MultimodalProcessor.from_pretrained(tmp_path)
    s = Sample(id="x", question="How many red circles?", images=[img()])
    a, b = proc.encode(s, "Answer: 1"), again.encode(s, "Answer: 1")
    assert a.input_ids == b.input_ids and torch.equal(a.pixel_values, b.pixel_values)
