import pytest

from vlrl.eval import PromptRecord, full_report, majority_correct, modality_gap, pass_at_k, summarize


def test_pass_at_k_by_hand():
    # n=4, c=1, k=2: 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    # n=5, c=2, k=3: 1 - C(3,3)/C(5,3) = 1 - 1/10 = 0.9
    assert pass_at_k(5, 2, 3) == pytest.approx(0.9)
    # k=1 is the fraction correct; all wrong is 0; too few wrong to fill k is 1
    assert pass_at_k(8, 3, 1) == pytest.approx(3 / 8)
    assert pass_at_k(8, 0, 4) == 0.0 and pass_at_k(4, 3, 2) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_majority_vote():
    # "5" gets 2 votes, "4" 1 vote: the majority answer 5 is wrong
    assert majority_correct(["5", "4", "5", None], [False, True, False, False], 4) is False
    # only the first k vote: among the first 2, a tie 4 vs 5 goes to the earliest ("4", correct)
    assert majority_correct(["4", "5", "5", "5"], [True, False, False, False], 2) is True
    assert majority_correct([None, None], [False, False], 2) is False


def rec(i, modality, correct, lengths=None, answers=None, pair=None, difficulty=1):
    return PromptRecord(id=str(i), modality=modality, domain="d", difficulty=difficulty, pair_id=pair,
                        correct=correct, answers=answers or ["1"] * len(correct),
                        lengths=lengths or [10] * len(correct), errors=[None] * len(correct))


def test_summary_and_breakdowns_by_hand():
    records = [rec(0, "text", [True, False], lengths=[10, 20], pair="p"),
               rec(1, "text_rendered", [False, False], lengths=[30, 40], pair="p", difficulty=2),
               rec(2, "image", [True, True], lengths=[5, 5])]
    s = summarize(records, ks=[1, 2])
    # pass@1 = mean(0.5, 0, 1) = 0.5; pass@2 = mean(1, 0, 1) = 2/3; mean tokens = 110 / 6
    assert s["pass@1"] == pytest.approx(0.5) and s["pass@2"] == pytest.approx(2 / 3)
    assert s["mean_tokens"] == pytest.approx(110 / 6) and s["prompts"] == 3 and s["responses"] == 6
    rep = full_report(records, ks=[1, 2])
    assert set(rep["by_modality"]) == {"text", "text_rendered", "image"}
    assert set(rep["by_difficulty"]) == {"1", "2"}
    gap = modality_gap(records)
    assert gap == {"pairs": 1, "text_pass@1": 0.5, "rendered_pass@1": 0.0, "gap": 0.5}


def _eval_json(path, overall, **by_modality):
    import json
    path.mkdir(parents=True, exist_ok=True)
    (path / "eval.json").write_text(json.dumps({"overall": {"pass@1": overall},
                                                "by_modality": {m: {"pass@1": v} for m, v in by_modality.items()}}))


def test_heldout_points_table_and_plot_over_iterations(tmp_path):
    """Evaluations at iterations 0, 4 and 10 (sampled at 0 and 10 only) read back in iteration order
    (10 after 4, not after 0 as text sorts), tabulated with the change from the first, and drawn."""
    from vlrl.eval.curves import heldout_points, plot_heldout
    from vlrl.eval.pipeline_report import heldout_table

    _eval_json(tmp_path / "eval" / "iter-0", 0.30, image=0.40, text=0.20)
    _eval_json(tmp_path / "eval" / "iter-0" / "sampled", 0.25, image=0.35, text=0.15)
    _eval_json(tmp_path / "eval" / "iter-10", 0.50, image=0.55, text=0.45)
    _eval_json(tmp_path / "eval" / "iter-10" / "sampled", 0.40, image=0.45, text=0.35)
    _eval_json(tmp_path / "eval" / "iter-4", 0.35, image=0.45, text=0.25)
    points = heldout_points(tmp_path)
    assert [p["iteration"] for p in points] == [0, 4, 10]
    assert points[1]["sampled"] == {} and points[2]["greedy"]["text"] == 0.45
    table = heldout_table(points)
    assert table[0] == ("| iteration | overall (greedy) | image (greedy) | text (greedy) | overall (sampled) | "
                        "image (sampled) | text (sampled) |")
    assert table[3] == "| 4 | 0.350 | 0.450 | 0.250 |  |  |  |"
    # text greedy 0.20 -> 0.45 (+25.0), sampled 0.15 -> 0.35 (+20.0)
    assert table[-1] == "| change 0 -> 10 (points) | +20.0 | +15.0 | +25.0 | +15.0 | +10.0 | +20.0 |"
    assert plot_heldout(tmp_path, tmp_path / "h.png").is_file()
    assert plot_heldout(tmp_path / "none", tmp_path / "n.png") is None


def test_answer_modes_by_hand(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from vlrl.eval.metrics import answer_modes

    def rec(i, modality, responses, correct):
        return PromptRecord(id=str(i), modality=modality, domain="d", difficulty=1, pair_id=None, correct=correct,
                            answers=["1"] * len(correct), lengths=[1] * len(correct), responses=responses)

    records = [rec(0, "image", ["Answer: 3", " Answer: 4", "Count: 1, 2. Answer: 2"], [True, False, True]),
               rec(1, "image", ["So 5. Answer: 5"], [False]), rec(2, "text", ["Answer: 7"], [True])]
    out = answer_modes(records)
    # image: 2 direct of 4 (1 right), 2 reasoned (1 right); text: 1 direct, right, no reasoned response
    assert out["image"] == {"responses": 4, "direct_share": 0.5, "direct_accuracy": 0.5, "reasoned_accuracy": 0.5}
    assert out["text"] == {"responses": 1, "direct_share": 1.0, "direct_accuracy": 1.0, "reasoned_accuracy": None}
    (tmp_path / "iter-0").mkdir()
    with (tmp_path / "iter-0" / "records.jsonl").open("w") as f:
        for r in records:
            f.write(json.dumps(r.__dict__) + "\n")
    script = Path(__file__).resolve().parents[2] / "scripts" / "answer_modes.py"
    got = json.loads(subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                                    check=True).stdout)
    assert got == {str(tmp_path / "iter-0"): out}
    (tmp_path / "bad.jsonl").write_text('{"id": 1}\n')
    bad = subprocess.run([sys.executable, str(script), str(tmp_path / "bad.jsonl")], capture_output=True, text=True)
    assert bad.returncode != 0 and "bad.jsonl:1: not an evaluation record" in bad.stderr


def test_before_after_table_with_sampled_columns():
    """Greedy before / after from the two stages' reports, sampled before / after from the run's first and
    last evaluations; a modality the sampled runs lack gets empty cells."""
    from vlrl.eval.pipeline_report import before_after

    rep = lambda overall, image, text: {"overall": {"pass@1": overall, "mean_tokens": 100.0},  # noqa: E731
                                        "by_modality": {"image": {"pass@1": image, "mean_tokens": 150.0},
                                                        "text": {"pass@1": text, "mean_tokens": 50.0}}}
    plain = before_after(rep(0.30, 0.40, 0.20), rep(0.35, 0.40, 0.30))
    assert plain[0].count("|") == 7 and plain[4] == "| text | 0.200 | 0.300 | +10.0 | 50 | 50 |"
    table = before_after(rep(0.30, 0.40, 0.20), rep(0.35, 0.40, 0.30),
                         sampled=({"overall": 0.25, "image": 0.20}, {"overall": 0.31, "image": 0.32}))
    assert table[0].endswith("| sampled before | sampled after | sampled change (points) |")
    assert table[1] == "|---" * 9 + "|"
    # image sampled 0.20 -> 0.32: +12.0 points; text has no sampled pass@1 here
    assert table[2] == "| overall | 0.300 | 0.350 | +5.0 | 100 | 100 | 0.250 | 0.310 | +6.0 |"
    assert table[3] == "| image | 0.400 | 0.400 | +0.0 | 150 | 150 | 0.200 | 0.320 | +12.0 |"
    assert table[4] == "| text | 0.200 | 0.300 | +10.0 | 50 | 50 |  |  |  |"
