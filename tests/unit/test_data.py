import json

import pytest
from PIL import Image

from vlrl.data import BadRowError, LoadReport, load_samples


def write_jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")


@pytest.fixture
def jsonl(tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (8, 8), "red").save(tmp_path / "imgs" / "a.png")
    path = tmp_path / "d.jsonl"
    write_jsonl(path, [
        {"id": "ok1", "question": "How many?", "images": ["imgs/a.png"], "answer": 3, "source": "web"},
        "{not json",
        {"id": "noq", "answer": "1"},
        {"id": "missing", "question": "?", "image": "imgs/none.png"},
        {"id": "ok2", "problem": "What is 1+1?", "answer": "2", "difficulty": "3"},
    ])
    return path


def test_jsonl_bad_rows_are_reported_with_file_and_line(jsonl):
    report = LoadReport()
    samples = load_samples(jsonl, on_bad_row="skip", report=report)
    assert [s.id for s in samples] == ["ok1", "ok2"]
    assert samples[0].images == [str(jsonl.parent / "imgs" / "a.png")]  # relative to the JSONL file
    assert samples[0].answer == "3" and samples[0].meta["source"] == "web" and samples[0].modality == "image"
    assert samples[1].difficulty == 3 and samples[1].modality == "text"
    assert len(report.skipped) == 3
    assert f"{jsonl}:2: not valid JSON" in report.skipped[0]
    assert f"{jsonl}:3: no question" in report.skipped[1]
    assert f"{jsonl}:4: image file" in report.skipped[2] and "none.png" in report.skipped[2]
    assert "skipped 3 bad rows" in report.summary()


def test_error_policy_raises_on_the_first_bad_row(jsonl):
    with pytest.raises(BadRowError, match=r"d\.jsonl:2"):
        load_samples(jsonl, on_bad_row="error")


def test_python_list_and_synth_spec():
    samples = load_samples([{"question": "What is 2+2?", "answer": 4}])
    assert samples[0].id == "row-0" and samples[0].answer == "4"
    synth = load_samples("synth:shapes?n=4&seed=2&levels=3")
    assert len(synth) == 4 and {s.difficulty for s in synth} == {3}


def test_local_hf_datasets(tmp_path):
    import datasets

    img = Image.new("RGB", (8, 8), "blue")
    ds = datasets.Dataset.from_dict({"question": ["How many?", "What is 1+1?"], "image": [img, None],
                                     "answer": ["1", "2"]}).cast_column("image", datasets.Image())
    ds.save_to_disk(str(tmp_path / "saved"))
    samples = load_samples(tmp_path / "saved", on_bad_row="error")
    assert [s.modality for s in samples] == ["image", "text"]
    from processors import load_image
    assert load_image(samples[0].images[0]).getpixel((0, 0)) == (0, 0, 255)
    (tmp_path / "pq").mkdir()
    ds.to_parquet(str(tmp_path / "pq" / "train.parquet"))
    assert [s.answer for s in load_samples(tmp_path / "pq")] == ["1", "2"]


def test_missing_source_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_samples(tmp_path / "nope.jsonl")


def test_row_level_gaps_are_clear_bad_rows(tmp_path):
    """A non-UTF-8 line, a list-valued answer and a directory as an image are bad rows naming file and
    line; the good rows around them load (issue 18, point 9)."""
    from vlrl.data import LoadReport, load_samples

    (tmp_path / "pics").mkdir()
    lines = [b'{"question": "1 + 1?", "answer": "2"}', b'{"question": "caf\xe9?", "answer": "1"}',
             b'{"question": "which two?", "answer": [2, 3]}', b'{"question": "count", "images": "pics", "answer": "1"}',
             b'{"question": "2 + 2?", "answer": 4}']
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = LoadReport()
    samples = load_samples(path, "skip", report)
    assert [s.answer for s in samples] == ["2", "4"]
    assert report.skipped == [
        f"{path}:2: not UTF-8 text (byte 17: b'\\xe9')",
        f"{path}:3: 'answer' must be a string or a number, got list [2, 3] (write several answers as one string, "
        f"e.g. \"2, 3\")",
        f"{path}:4: image '{tmp_path / 'pics'}' is a directory, not an image file",
    ]


def test_a_batch_whose_every_image_broke_after_loading_is_a_clear_error():
    import pytest

    from vlrl.training import BatchStream, ResumableBatchSampler

    class Broken:
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return None  # what SFTDataset gives for a row whose image no longer decodes

    stream = BatchStream(Broken(), lambda items: items, ResumableBatchSampler(4, 2, 0, 0, 1))
    with pytest.raises(ValueError, match="every one of the 2 rows of a batch failed to load its images"):
        next(stream)
