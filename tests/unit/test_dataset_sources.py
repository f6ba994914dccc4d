"""Dataset sources: the spec forms, the strict cases as clear errors, images from any column layout, the
dataset id path through the user's offline cache, and JSONL == parquet."""

from __future__ import annotations

import glob
import json
import shutil

import datasets
import pytest

from tests.unit.test_dataset_adapters import chartqa, geometry3k, mathvista, png
from vlrl.data import BadRowError, LoadReport, load_samples
from vlrl.data.sources import SourceError, SourceSpec, parse_source


def test_compact_string_and_mapping_parse_to_the_same_spec():
    s = parse_source("hf:AI4Math/MathVista?split=testmini&adapter=mathvista&limit=5&columns.images=a,b"
                     "&columns.question=query&where.answer_type=integer,float&ignore=image&strict=false&config=c")
    assert s == SourceSpec(path="AI4Math/MathVista", split="testmini", config="c", adapter="mathvista",
                           columns={"images": ["a", "b"], "question": "query"},
                           where={"answer_type": ["integer", "float"]}, limit=5, ignore=["image"], strict=False)
    assert parse_source(dict(path="AI4Math/MathVista", split="testmini", adapter="mathvista", limit=5,
                             columns={"images": ["a", "b"], "question": "query"}, where=s.where, ignore=["image"],
                             strict=False, config="c")) == s
    assert parse_source("data/train.jsonl") is None and parse_source("synth:shapes?n=3") is None
    with pytest.raises(SourceError, match="unknown key 'splt'"):
        parse_source("hf:x?splt=test")
    with pytest.raises(SourceError, match=r"unknown key\(s\) \['colums'\]"):
        parse_source({"path": "x", "colums": {}})
    with pytest.raises(SourceError, match=r"columns maps unknown field\(s\) \['questions'\]"):
        parse_source("hf:x?columns.questions=q")


def test_a_local_dataset_dict_never_silently_yields_its_first_split(tmp_path):
    d = geometry3k(tmp_path / "g")
    with pytest.raises(SourceError, match="has splits train .*: name one"):
        load_samples(d)  # a plain directory: the same rule
    with pytest.raises(SourceError, match=r"has no split 'tset'; its splits: train \(3 rows\)"):
        load_samples({"path": str(d), "split": "tset", "adapter": "geometry3k"})
    assert len(load_samples({"path": str(d), "split": "train"})) == 3  # unambiguous columns: no adapter needed


def test_a_mapped_or_ignored_column_that_does_not_exist_is_named(tmp_path):
    d = chartqa(tmp_path / "c")
    with pytest.raises(SourceError, match=r"columns.answer names column 'labels', which the dataset does not have; "
                                          r"its columns: \['image', 'query', 'label', 'human_or_machine'\]"):
        load_samples(f"hf:{d}?split=test&adapter=chartqa&columns.answer=labels")
    with pytest.raises(SourceError, match="ignore names column 'img'"):
        load_samples(f"hf:{d}?split=test&adapter=chartqa&ignore=img")
    with pytest.raises(SourceError, match="where names missing column"):
        load_samples(f"hf:{d}?split=test&adapter=chartqa&where.kind=human")


def test_uncovered_image_columns_are_an_error_unless_strict_is_off(tmp_path):
    ds = datasets.Dataset.from_dict({"question": ["q"], "answer": ["1"], "image_1": [{"bytes": png("red"), "path": None}],
                                     "image_2": [{"bytes": png("blue"), "path": None}]},
                                    features=datasets.Features({"question": datasets.Value("string"),
                                                                "answer": datasets.Value("string"),
                                                                "image_1": datasets.Image(), "image_2": datasets.Image()}))
    ds.save_to_disk(str(tmp_path / "two"))
    with pytest.raises(SourceError, match=r"\['image_2'\] are neither in columns.images \['image_1'\] nor in ignore"):
        load_samples(f"hf:{tmp_path / 'two'}?columns.images=image_1")
    assert len(load_samples(f"hf:{tmp_path / 'two'}?columns.images=image_1&ignore=image_2")[0].images) == 1
    assert len(load_samples(f"hf:{tmp_path / 'two'}?columns.images=image_1&strict=false")[0].images) == 1
    both = load_samples(f"hf:{tmp_path / 'two'}?strict=false")  # every image column, in natural order
    assert len(both[0].images) == 2


def test_images_from_every_layout_and_empty_columns_skipped(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(png("red"))
    ds = datasets.Dataset.from_dict({
        "question": ["q1", "q2", "q3"], "answer": ["1", "2", "3"],
        "image_1": ["imgs/a.png", None, "imgs/a.png"],  # paths relative to the dataset
        "image_2": [png("green"), None, None],  # raw bytes
        "image_3": [None, None, {"bytes": png("blue"), "path": None}]})
    ds.to_parquet(str(tmp_path / "train.parquet"))
    got = load_samples(f"hf:{tmp_path}?columns.images=image_1,image_2,image_3", on_bad_row="error")
    from processors import load_image
    colours = [[load_image(im).getpixel((0, 0)) for im in s.images] for s in got]
    assert colours == [[(255, 0, 0), (0, 128, 0)], [], [(255, 0, 0), (0, 0, 255)]]
    assert [s.modality for s in got] == ["image", "text", "image"]


def test_a_broken_image_names_dataset_split_row_and_column_or_is_a_counted_skip(tmp_path):
    rows = {"images": [[{"bytes": png("red"), "path": None}], [{"bytes": b"not a png", "path": None}]],
            "problem": ["<image>a", "<image>b"], "answer": ["1", "2"]}
    from tests.unit.test_dataset_adapters import GEO
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows, features=GEO)}).save_to_disk(str(tmp_path / "d"))
    src = f"hf:{tmp_path / 'd'}?split=test&adapter=geometry3k"
    with pytest.raises(BadRowError, match=r"d \[test row 1\]: column 'images': image cannot be decoded"):
        load_samples(src, on_bad_row="error")
    report = LoadReport()
    assert len(load_samples(src, "skip", report)) == 1 and len(report.skipped) == 1
    assert "[test row 1]" in report.skipped[0]


def test_where_and_limit(tmp_path):
    d = mathvista(tmp_path / "m")
    got = load_samples(f"hf:{d}?adapter=mathvista&where.answer_type=integer,float")
    assert [s.id for s in got] == ["2", "3"]
    assert [s.id for s in load_samples(f"hf:{d}?adapter=mathvista&limit=1")] == ["1"]


def test_jsonl_and_the_same_rows_as_parquet_load_to_identical_samples(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "0.png").write_bytes(png("red"))
    rows = [dict(id="a", question="<image>How many?", images=["images/0.png"], answer="3", domain="counting",
                 difficulty=2, source_note="x"),
            dict(id="b", question="What is 2+2?", images=[], answer="4", domain="arithmetic", difficulty=1,
                 source_note="y")]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "data.parquet"))  # beside the JSONL
    a = load_samples(tmp_path / "data.jsonl", on_bad_row="error")
    b = load_samples(f"hf:{tmp_path / 'data.parquet'}", on_bad_row="error")
    assert a == b and a[0].images == [str(tmp_path / "images" / "0.png")] and a[0].meta == {"source_note": "x"}
    assert load_samples(tmp_path / "data.parquet") == a  # a parquet path is a dataset without the hf: prefix


def _cache_as_hub_dataset(src_dir, cache, repo: str) -> None:
    """What an earlier online ``load_dataset(repo)`` leaves in the datasets cache, built offline: the
    parquet builder's arrow files, moved to the repo's cache folder and named after it."""
    built = datasets.load_dataset(str(src_dir), cache_dir=str(cache / "tmp"))
    del built
    [info] = glob.glob(str(cache / "tmp" / "*" / "*" / "*" / "*" / "dataset_info.json"))
    from datasets.naming import camelcase_to_snakecase

    org, name = repo.split("/")
    dest = cache / f"{org}___{camelcase_to_snakecase(name)}" / "default" / "0.0.0" / ("0" * 8)
    shutil.copytree(info.rsplit("/", 1)[0], dest, ignore=shutil.ignore_patterns("*.lock"))
    for f in dest.glob("*.arrow"):  # parquet-test.arrow -> chart_qa-test.arrow
        f.rename(dest / f.name.replace(f.name.split("-")[0], camelcase_to_snakecase(name), 1))


def test_a_dataset_id_loads_from_the_users_offline_cache(tmp_path, monkeypatch):
    d = chartqa(tmp_path / "src")
    _cache_as_hub_dataset(d, tmp_path / "cache", "HuggingFaceM4/ChartQA")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    got = load_samples("hf:HuggingFaceM4/ChartQA?split=test&adapter=chartqa", on_bad_row="error")
    assert [s.answer for s in got] == ["40", "Red"] and got[0].id == "ChartQA-test-0"
    with pytest.raises(SourceError, match="'not/cached': not a local path, and the dataset id could not be loaded"):
        load_samples("hf:not/cached?split=test")


def test_samples_with_dataset_images_are_written_back_as_a_jsonl_dataset(tmp_path):
    """long2short and rejection sampling write their samples with ``write_dataset``: a dataset source's
    images are bytes, which are decoded and saved as PNGs (an image as bytes had no ``save``)."""
    from processors import load_image
    from tests.unit.test_dataset_adapters import GEO
    from vlrl.data.synth import write_dataset

    rows = {"images": [[{"bytes": png("blue"), "path": None}]], "problem": ["<image>a"], "answer": ["1"]}
    datasets.Dataset.from_dict(rows, features=GEO).save_to_disk(str(tmp_path / "d"))
    samples = load_samples(f"hf:{tmp_path / 'd'}?adapter=geometry3k", on_bad_row="error")
    back = load_samples(write_dataset(samples, tmp_path / "out"), on_bad_row="error")
    assert [s.question for s in back] == ["<image>a"]
    assert load_image(back[0].images[0]).getpixel((0, 0)) == (0, 0, 255)
