import re

import numpy as np
import pytest

from vlrl.data.synth import corpus, generate, parse_levels, write_dataset
from vlrl.data.synth.arithmetic import word_problem
from vlrl.data.synth.shapes import Obj, render_scene


@pytest.mark.parametrize("task", ["shapes", "arithmetic", "text_rendered", "shape_math"])
def test_tasks_are_deterministic_by_seed(task):
    a, b, c = generate(task, 20, seed=3), generate(task, 20, seed=3), generate(task, 20, seed=4)
    key = lambda ss: [(s.question, s.answer, [np.asarray(i).tobytes() for i in s.images]) for s in ss]  # noqa: E731
    assert key(a) == key(b) and key(a) != key(c)


def count(scene, color=None, shape=None):
    return sum((color is None or o["color"] == color) and (shape is None or o["shape"] == shape) for o in scene)


def recompute_shapes_answer(s):
    """Re-derive the answer from the scene spec and the question text, independently of the generator."""
    scene, q = s.meta["scene"], s.question
    if q == "How many shapes are there?":
        return len(scene)
    if m := re.fullmatch(r"How many (red|green|blue|yellow) shapes are there\?", q):
        return count(scene, color=m[1])
    if m := re.fullmatch(r"How many (circle|square|triangle)s are there\?", q):
        return count(scene, shape=m[1])
    if m := re.fullmatch(r"How many (\w+) (circle|square|triangle)s are there\?", q):
        return count(scene, m[1], m[2])
    if m := re.fullmatch(r"How many shapes are (left of|above) the (\w+) (\w+)\?", q):
        ref = next(o for o in scene if o["color"] == m[2] and o["shape"] == m[3])
        key = "col" if m[1] == "left of" else "row"
        return sum(o[key] < ref[key] for o in scene)
    if m := re.fullmatch(r"What is the difference between the number of (\w+)s and the number of (\w+)s\?", q):
        return abs(count(scene, shape=m[1]) - count(scene, shape=m[2]))
    m = re.fullmatch(r"What is the number of (\w+) shapes plus the number of (\w+)s\?", q)
    return count(scene, color=m[1]) + count(scene, shape=m[2])


def test_shapes_answers_are_correct_by_construction():
    samples = generate("shapes", 300, seed=11)
    assert {s.difficulty for s in samples} == {1, 2, 3, 4, 5}
    assert len({s.meta["qtype"] for s in samples}) >= 7
    for s in samples:
        assert int(s.answer) == recompute_shapes_answer(s), s.question


def test_shape_math_answers_are_the_expression_at_the_shape_count():
    samples = generate("shape_math", 200, seed=5)
    assert {s.difficulty for s in samples} == {1, 2, 3, 4, 5} and {s.modality for s in samples} == {"image"}
    for s in samples:
        expr = re.fullmatch(r"Let n be the number of shapes in the picture\. What is (.+)\?", s.question)[1]
        assert int(s.answer) == eval(expr.replace("n", str(len(s.meta["scene"])))) >= 0  # noqa: S307 - our digits
    # the long trace counts the scene, substitutes and computes: "So n = 4 and the problem is 4 * 3 + 2."
    s = generate("shape_math", 3, seed=5, style="long")[2]
    n = len(s.meta["scene"])
    assert f"That makes {n}." in s.response and f"So n = {n} and the problem is" in s.response


def test_rendered_scene_has_the_shape_colour_in_its_cell():
    img = np.asarray(render_scene([Obj(0, 2, "blue", "square")], size=30, grid=3))
    assert tuple(img[5, 25]) == (40, 80, 230) and tuple(img[5, 5]) == (255, 255, 255)


def test_arithmetic_answers_evaluate_correctly():
    for s in generate("arithmetic", 200, seed=2):
        if s.meta["kind"] == "expression":
            expr = s.question.removeprefix("What is ").removesuffix("?")
            assert int(s.answer) == eval(expr)  # noqa: S307 - our own generated digits and operators
        assert int(s.answer) >= 0


def test_word_problem_by_hand():
    import random
    text, value, structure = word_problem(random.Random(0), steps=3)
    nums = [int(x) for x in re.findall(r"\d+", text)]
    start, more, given, times = nums
    assert value == (start + more - given) * times
    assert structure["ops"] == [["+", more], ["-", given], ["*", times]]


def test_text_rendered_pairs_link_the_same_problem():
    samples = generate("text_rendered", 10, seed=1)
    assert len(samples) == 20
    for img_s, txt_s in zip(samples[::2], samples[1::2]):
        assert img_s.pair_id == txt_s.pair_id and img_s.answer == txt_s.answer
        assert img_s.modality == "text_rendered" and txt_s.modality == "text"
        assert np.asarray(img_s.images[0]).min() == 0  # glyph pixels were drawn


def test_levels_parse_and_reject_nonsense():
    assert parse_levels("1-3") == (1, 2, 3) and parse_levels("2,4") == (2, 4) and parse_levels(5) == (5,)
    with pytest.raises(ValueError, match="1-5"):
        parse_levels("0-7")
    with pytest.raises(ValueError, match="unknown synthetic task"):
        generate("sudoku", 3)


def test_written_dataset_loads_back(tmp_path):
    from vlrl.data import load_samples
    samples = generate("shapes", 5) + generate("arithmetic", 3)
    path = write_dataset(samples, tmp_path)
    again = load_samples(path, on_bad_row="error")
    assert [s.id for s in again] == [s.id for s in samples]
    assert [s.answer for s in again] == [s.answer for s in samples]
    assert again[0].images and (tmp_path / again[0].images[0]).exists()


def test_corpus_covers_every_task():
    texts = corpus(n_per_task=20)
    assert any("circle" in t for t in texts) and any("What is" in t for t in texts)
    assert any("Solve the problem" in t for t in texts)


@pytest.mark.parametrize("style", ["direct", "short", "long"])
def test_every_programmatic_trace_verifies_correct(style):
    from vlrl.rewards import AnswerVerifier
    v = AnswerVerifier(symbolic=False)
    for task in ("shapes", "arithmetic", "text_rendered", "shape_math"):
        for s in generate(task, 150, seed=7, style=style, slip=0.5):
            r = v(s.response, s)
            assert r.reward == 1.0, (s.question, s.response)
            assert s.response.lower().count("answer") == 1  # only the final line names the answer


def test_long_traces_show_the_four_behaviours():
    samples = [s for t in ("shapes", "arithmetic", "text_rendered", "shape_math")
               for s in generate(t, 60, seed=3, style="long", slip=0.3)]
    text = [s.response for s in samples]
    assert all(r.startswith(("Plan:", "Reading the image")) for r in text)          # planning
    assert sum("Check:" in r for r in text) / len(text) > 0.9                        # evaluation
    assert sum("Another way" in r for r in text) / len(text) > 0.8                   # exploration
    slips = sum("Wait" in r for r in text) / len(text)                               # reflection
    assert 0.15 < slips < 0.45
    assert all("Wait" not in s.response for s in generate("shapes", 30, seed=3, style="long", slip=0.0))


def test_response_lengths_grow_with_style():
    import statistics
    lens = {st: statistics.mean(len(s.response) for s in generate("shapes", 50, seed=1, style=st))
            for st in ("direct", "short", "long")}
    assert lens["direct"] < lens["short"] < lens["long"]
