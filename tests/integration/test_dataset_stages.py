"""Dataset sources through the user-facing paths: ``vlrl data inspect``, ``vlrl eval`` per benchmark, and
curation's multiple-choice rule on an adapter's rows."""

from __future__ import annotations

import json

from tests.unit.test_dataset_adapters import chartqa, mathvista
from vlrl.cli import main as cli
from vlrl.data import load_samples


def test_data_inspect_prints_columns_splits_rows_and_skips(tmp_path, capsys):
    d = mathvista(tmp_path / "MathVista")
    assert cli(["data", "inspect", f"hf:{d}?adapter=mathvista", "--rows", "2"]) == 0
    out = capsys.readouterr().out
    assert "testmini 3 <- used" in out and "test 3" in out
    assert "question <- query" in out and "images <- ['decoded_image']" in out and "ignored  ['image']" in out
    assert "loaded   3 samples (image 3)" in out and "skipped  0" in out
    assert out.count("\nrow      ") == 2 and '"choices": ["30", "145", "160"]' in out
    assert cli(["data", "inspect", f"hf:{d}?split=testmini", "--json"]) == 2  # ambiguous question column
    assert "could each be the question" in capsys.readouterr().err
    assert cli(["data", "inspect", f"hf:{d}?adapter=mathvista", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["splits"] == {"testmini": 3, "test": 3} and info["modalities"] == {"image": 3}


def test_eval_on_adapters_reports_accuracy_per_benchmark(saved_tiny, tmp_path):
    """``vlrl eval --config`` with one source as a compact string and one as a YAML mapping."""
    mv, cq = mathvista(tmp_path / "mv"), chartqa(tmp_path / "cq")
    (tmp_path / "eval.yaml").write_text(f"sources:\n  - hf:{mv}?adapter=mathvista\n"
                                        f"  - {{path: {cq}, split: test, adapter: chartqa}}\n")
    assert cli(["eval", "--config", str(tmp_path / "eval.yaml"), "--model", str(saved_tiny), "--n", "2",
                "--temperature", "1", "--max-new-tokens", "4", "--out", str(tmp_path / "eval")]) == 0
    result = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert set(result["by_domain"]) == {"mathvista", "chartqa"}
    assert result["by_domain"]["mathvista"]["prompts"] == 3 and result["by_domain"]["chartqa"]["prompts"] == 2
    assert "domain=mathvista" in (tmp_path / "eval" / "eval.md").read_text()


def test_curation_drops_an_adapters_multiple_choice_rows_for_rl(tmp_path):
    from vlrl.curation import rule_reasons
    from vlrl.curation.filters import RuleFilterConfig

    samples = load_samples(f"hf:{mathvista(tmp_path / 'mv')}?adapter=mathvista")
    reasons = {s.id: rule_reasons(s, RuleFilterConfig()) for s in samples}
    assert "multiple_choice" in reasons["1"] and "multiple_choice" not in reasons["3"]


def test_data_inspect_with_a_model_lists_the_rows_its_processor_rejects(saved_tiny, tmp_path, capsys):
    import datasets

    from tests.unit.test_dataset_adapters import GEO, png

    rows = {"images": [[{"bytes": png("red"), "path": None}]] * 2,
            "problem": ["<image>Find x.", "<image> and <image>: find y."], "answer": ["1", "2"]}
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows, features=GEO)}).save_to_disk(str(tmp_path / "g"))
    assert cli(["data", "inspect", f"hf:{tmp_path / 'g'}?split=test&adapter=geometry3k",
                "--model", str(saved_tiny)]) == 0
    out = capsys.readouterr().out
    assert "loaded   1 samples" in out and "skipped  1" in out and "g-test-1" in out
