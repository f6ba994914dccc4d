"""Each adapter on a few rows written by the test in that set's real layout (column names, feature types,
file layout: hub-style parquet shards, a README with configs, or ``save_to_disk``)."""

from __future__ import annotations

import io

import datasets
import pytest
from PIL import Image

from vlrl.data import load_samples
from vlrl.data.sources import SourceError
from vlrl.rewards.verify import AnswerVerifier


def png(color: str, size: int = 12) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, "PNG")
    return buf.getvalue()


def shards(root, splits: dict[str, datasets.Dataset], folder: str = "data") -> None:
    """The hub's parquet layout: FOLDER/SPLIT-00000-of-00001.parquet."""
    (root / folder).mkdir(parents=True, exist_ok=True)
    for name, ds in splits.items():
        ds.to_parquet(str(root / folder / f"{name}-00000-of-00001.parquet"))


def verifier() -> AnswerVerifier:
    return AnswerVerifier(symbolic=False)


GEO = datasets.Features({"images": datasets.List(datasets.Image()), "problem": datasets.Value("string"),
                         "answer": datasets.Value("string")})


def geometry3k(root, n_train: int = 3, n_test: int = 2):
    def part(n, tag):
        return datasets.Dataset.from_dict(
            {"images": [[{"bytes": png("red"), "path": None}] for _ in range(n)],
             "problem": [f"<image>Find x. ({tag} {i})" for i in range(n)],
             "answer": [str(10 + i) for i in range(n)]}, features=GEO)
    shards(root, {"train": part(n_train, "train"), "validation": part(1, "val"), "test": part(n_test, "test")})
    return root


def test_geometry3k_parquet_shards_use_the_requested_split(tmp_path):
    d = geometry3k(tmp_path / "geometry3k")
    samples = load_samples(f"hf:{d}?split=test&adapter=geometry3k", on_bad_row="error")
    assert [s.question for s in samples] == ["<image>Find x. (test 0)", "<image>Find x. (test 1)"]
    assert all(s.modality == "image" and len(s.images) == 1 and s.domain == "geometry3k" for s in samples)
    assert [s.answer for s in samples] == ["10", "11"]
    with pytest.raises(SourceError, match=r"has splits train \(3 rows\), validation \(1 rows\), test \(2 rows\)"):
        load_samples(f"hf:{d}?adapter=geometry3k")


def test_clevr_count_save_to_disk_dataset_dict(tmp_path):
    rows = {"images": [[{"bytes": png(c), "path": None}] for c in ("red", "green", "blue", "black")],
            "problem": ["<image>How many items are there in the image?"] * 4, "answer": ["3", "5", "2", "7"]}
    full = datasets.Dataset.from_dict(rows, features=GEO)
    datasets.DatasetDict({"train": full.select([0, 1, 2]), "test": full.select([3])}).save_to_disk(str(tmp_path / "c"))
    test = load_samples({"path": str(tmp_path / "c"), "split": "test", "adapter": "clevr_count"}, on_bad_row="error")
    assert [s.answer for s in test] == ["7"]
    from processors import load_image
    assert load_image(test[0].images[0]).getpixel((0, 0)) == (0, 0, 0)
    train = load_samples(f"hf:{tmp_path / 'c'}?split=train&adapter=clevr_count&limit=2")
    assert [s.answer for s in train] == ["3", "5"]


MATHVISTA = datasets.Features({
    "pid": datasets.Value("string"), "question": datasets.Value("string"), "image": datasets.Value("string"),
    "decoded_image": datasets.Image(), "choices": datasets.List(datasets.Value("string")),
    "unit": datasets.Value("string"), "precision": datasets.Value("float64"), "answer": datasets.Value("string"),
    "question_type": datasets.Value("string"), "answer_type": datasets.Value("string"),
    "metadata": {"source": datasets.Value("string"), "task": datasets.Value("string")},
    "query": datasets.Value("string")})


def mathvista(root):
    rows = [
        dict(pid="1", question="What is the angle?", image="images/1.jpg", choices=["30", "145", "160"], unit=None,
             precision=None, answer="145", question_type="multi_choice", answer_type="text",
             query="Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at "
                   "the end.\nQuestion: What is the angle?\nChoices:\n(A) 30\n(B) 145\n(C) 160"),
        dict(pid="2", question="How long is the bar?", image="images/2.jpg", choices=None, unit="cm", precision=2.0,
             answer="1.45", question_type="free_form", answer_type="float",
             query="Hint: Please answer the question requiring a floating-point number with two decimal places "
                   "and provide the final value, e.g., 1.23, 1.34, 1.45, at the end.\nQuestion: How long is the bar?"),
        dict(pid="3", question="How many people?", image="images/3.jpg", choices=None, unit=None, precision=None,
             answer="4", question_type="free_form", answer_type="integer",
             query="Hint: Please answer the question requiring an integer answer.\nQuestion: How many people?"),
    ]
    for i, r in enumerate(rows):
        r["decoded_image"] = {"bytes": png(["red", "green", "blue"][i]), "path": None}
        r["metadata"] = {"source": "toy", "task": "figure QA"}
    cols = {k: [r[k] for r in rows] for k in MATHVISTA}
    testmini = datasets.Dataset.from_dict(cols, features=MATHVISTA)
    shards(root, {"testmini": testmini, "test": testmini.map(lambda r: {"answer": ""})})
    return root


def test_mathvista_testmini_query_choices_precision(tmp_path):
    d = mathvista(tmp_path / "MathVista")
    samples = load_samples("hf:" + str(d) + "?adapter=mathvista", on_bad_row="error")  # testmini by default
    assert [s.id for s in samples] == ["1", "2", "3"] and {s.domain for s in samples} == {"mathvista"}
    mc, flt, _ = samples
    assert mc.question.startswith("Hint:") and mc.question.count("(B) 145") == 1  # query wins; not listed twice
    assert mc.meta["choices"] == ["30", "145", "160"] and mc.meta["question_type"] == "multi_choice"
    assert all(len(s.images) == 1 and isinstance(s.images[0], bytes) for s in samples)  # decoded_image, not the path
    v = verifier()
    assert [v(r, mc).reward for r in ("\\boxed{B}", "\\boxed{145}", "Answer: (B) 145", "\\boxed{A}")] == [1, 1, 1, 0]
    assert flt.meta["abs_tol"] == pytest.approx(0.005)
    assert [v(r, flt).reward for r in ("\\boxed{1.45}", "\\boxed{1.4549}", "\\boxed{1.46}")] == [1, 1, 0]


def test_mathvista_without_the_adapter_names_the_ambiguous_columns(tmp_path):
    d = mathvista(tmp_path / "MathVista")
    with pytest.raises(SourceError, match=r"columns \['question', 'query'\] could each be the question"):
        load_samples(f"hf:{d}?split=testmini")
    with pytest.raises(SourceError, match=r"several image columns \['image', 'decoded_image'\]"):
        load_samples(f"hf:{d}?split=testmini&columns.question=query")
    got = load_samples(f"hf:{d}?split=testmini&columns.question=query&columns.images=decoded_image&ignore=image")
    assert len(got) == 3 and got[0].meta["choices"] == ["30", "145", "160"]


MMMU_README = """---
configs:
- config_name: Accounting
  data_files:
  - split: dev
    path: Accounting/dev-*
  - split: validation
    path: Accounting/validation-*
- config_name: Art
  data_files:
  - split: validation
    path: Art/validation-*
---
"""


def mmmu(root):
    feats = {"id": datasets.Value("string"), "question": datasets.Value("string"), "options": datasets.Value("string"),
             "explanation": datasets.Value("string"), **{f"image_{k}": datasets.Image() for k in range(1, 8)},
             "img_type": datasets.Value("string"), "answer": datasets.Value("string"),
             "topic_difficulty": datasets.Value("string"), "question_type": datasets.Value("string"),
             "subfield": datasets.Value("string")}
    def rows(prefix, items):
        out = {k: [] for k in feats}
        for i, (question, options, answer, images, level, qtype) in enumerate(items):
            vals = dict(id=f"{prefix}_{i + 1}", question=question, options=options, explanation="", img_type="['Plots']",
                        answer=answer, topic_difficulty=level, question_type=qtype, subfield="Managerial")
            vals.update({f"image_{k}": ({"bytes": png(images[k]), "path": None} if k in images else None)
                         for k in range(1, 8)})
            for k in feats:
                out[k].append(vals[k])
        return datasets.Dataset.from_dict(out, features=datasets.Features(feats))
    val = rows("validation_Accounting", [
        ("Which plot, <image 2> or <image 1>, shows growth?", "['the first', 'the second']", "B",
         {1: "red", 2: "green"}, "Medium", "multiple-choice"),
        ("Compute the total cost shown in <image 1>.", "[]", "42", {1: "blue"}, "Hard", "open"),
    ])
    dev = rows("dev_Accounting", [("What is shown?", "['$6', '$7']", "A", {1: "black"}, "Easy", "multiple-choice")])
    shards(root, {"validation": val, "dev": dev}, "Accounting")
    shards(root, {"validation": rows("validation_Art", [("Style of <image 1>?", "['a', 'b']", "A", {1: "red"}, "Easy",
                                                          "multiple-choice")])}, "Art")
    (root / "README.md").write_text(MMMU_README)
    return root


def test_mmmu_image_columns_tags_options_and_letter_answers(tmp_path):
    d = mmmu(tmp_path / "MMMU")
    samples = load_samples({"path": str(d), "config": "Accounting", "split": "validation", "adapter": "mmmu"},
                           on_bad_row="error")
    assert [s.id for s in samples] == ["validation_Accounting_1", "validation_Accounting_2"]
    mc, open_q = samples
    from processors import load_image
    assert [load_image(im).getpixel((0, 0)) for im in mc.images] == [(0, 128, 0), (255, 0, 0)]  # tag order
    assert mc.question == ("Which plot, <image> or <image>, shows growth?\nOptions:\n(A) the first\n(B) the second")
    assert mc.difficulty == 2 and open_q.difficulty == 3 and mc.domain == "mmmu"
    assert open_q.meta.get("choices") is None and len(open_q.images) == 1 and open_q.answer == "42"
    v = verifier()
    assert [v(r, mc).reward for r in ("\\boxed{B}", "\\boxed{the second}", "\\boxed{A}")] == [1, 1, 0]
    dev = load_samples(f"hf:{d}?config=Accounting&split=dev&adapter=mmmu")
    assert [s.id for s in dev] == ["dev_Accounting_1"]
    with pytest.raises(SourceError, match="no split 'dev'"):
        load_samples(f"hf:{d}?config=Art&split=dev&adapter=mmmu")


def test_mmmu_without_the_adapter_needs_its_image_columns_named(tmp_path):
    d = mmmu(tmp_path / "MMMU")
    with pytest.raises(SourceError, match=r"several image columns \['image_1', .*'image_7'\]"):
        load_samples(f"hf:{d}?config=Accounting&split=validation")
    with pytest.raises(SourceError, match=r"image-like column\(s\) \['image_2', .*'image_7'\] are neither"):
        load_samples(f"hf:{d}?config=Accounting&split=validation&columns.images=image_1")


def chartqa(root):
    feats = datasets.Features({"image": datasets.Image(), "query": datasets.Value("string"),
                               "label": datasets.List(datasets.Value("string")),
                               "human_or_machine": datasets.Value("int64")})
    def part(labels):
        n = len(labels)
        return datasets.Dataset.from_dict({"image": [{"bytes": png("red"), "path": None}] * n,
                                           "query": [f"What is value {i}?" for i in range(n)], "label": labels,
                                           "human_or_machine": [0] * n}, features=feats)
    shards(root, {"train": part([["12"], ["Yes"]]), "val": part([["3.5"]]), "test": part([["40"], ["Red", "red"]])})
    return root


def test_chartqa_list_labels_and_relaxed_accuracy(tmp_path):
    d = chartqa(tmp_path / "ChartQA")
    samples = load_samples(f"hf:{d}?split=test&adapter=chartqa", on_bad_row="error")
    num, word = samples
    assert num.answer == "40" and num.question == "What is value 0?" and num.domain == "chartqa"
    assert word.answer == "Red" and word.meta["answers"] == ["Red", "red"]
    v = verifier()
    # relaxed accuracy: within 5% of 40 is right (41.9), 42.5 is not
    assert [v(r, num).reward for r in ("\\boxed{41.9}", "\\boxed{38.1}", "\\boxed{42.5}")] == [1, 1, 0]
    assert load_samples(f"hf:{d}?split=val&adapter=chartqa")[0].answer == "3.5"
