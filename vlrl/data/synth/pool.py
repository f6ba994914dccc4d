"""A raw prompt pool for curation: good RL prompts mixed with the kinds the k1.5 filters must remove.

Every sample carries its ground truth in ``meta["kind"]``, so a curation report can be checked against
what the generator planted:

- ``regular``: shapes and shape_math (image), arithmetic (text) and rendered arithmetic (image of text) at
  levels 1-5;
- ``choice``: multiple choice, with lettered options or as "Which is larger, 37 or 52?" (text and image);
- ``true_false``: "True or false: ..." / "Is ... ? Answer yes or no." (text and image);
- ``proof``: "Prove that ..." with no checkable final answer;
- ``no_reference``: a question without a reference answer;
- ``guessable``: the answer is the only number in the question ("What is 46 + 0?"), so a model that
  copies a number without reasoning hacks them.
"""

from __future__ import annotations

import random

from vlrl.data.synth.arithmetic import generate_arithmetic, generate_text_rendered
from vlrl.data.synth.shapes import generate_shape_math, generate_shapes
from vlrl.types import Sample

# share of each planted kind in the pool; the rest is regular
TRAP_SHARES = {"choice": 0.08, "true_false": 0.08, "proof": 0.04, "no_reference": 0.04, "guessable": 0.06}
_PROOFS = ["Prove that the sum of two even numbers is even.", "Show that the product of two odd numbers is odd.",
           "Prove that there are infinitely many prime numbers.", "Show that {a} * {b} equals {b} * {a}."]


def _choice(rng: random.Random, base: Sample) -> tuple[str, str]:
    """A multiple-choice version of ``base``: lettered options, or 'Which is larger, a or b?'."""
    ans = int(base.answer)
    if not base.images and rng.random() < 0.5:
        a, b = rng.sample(range(2, 99), 2)
        return f"Which is larger, {a} or {b}?", str(max(a, b))
    options = sorted({ans, ans + 1, max(0, ans - 1), ans + 2})[:3]
    if ans not in options:
        options[-1] = ans
    rng.shuffle(options)
    letters = "ABC"
    text = " ".join(f"({letters[i]}) {o}" for i, o in enumerate(options))
    return f"{base.question} Choose one: {text}", letters[options.index(ans)]


def _true_false(rng: random.Random, base: Sample) -> tuple[str, str]:
    ans, truth = int(base.answer), rng.random() < 0.5
    shown = ans if truth else ans + rng.choice([1, 2])
    claim = base.question.rstrip("?.")
    if rng.random() < 0.5:
        return f'True or false: the answer to "{claim}" is {shown}.', "True" if truth else "False"
    return f"{claim}. Is the answer {shown}? Answer yes or no.", "yes" if truth else "no"


def _trap(kind: str, rng: random.Random, base: Sample, i: int, seed: int) -> Sample:
    """Turn ``base`` into a planted item of ``kind``."""
    question, answer, images = base.question, base.answer, list(base.images)
    if kind == "choice":
        question, answer = _choice(rng, base)
    elif kind == "true_false":
        question, answer = _true_false(rng, base)
    elif kind == "proof":
        question, answer, images = rng.choice(_PROOFS).format(a=rng.randint(2, 9), b=rng.randint(2, 9)), None, []
    elif kind == "no_reference":
        answer = None
    elif kind == "guessable":  # the answer is the only number in the question: copying it is a right guess
        x, name = rng.randint(2, 60), rng.choice(["Ann", "Bo", "Cara", "Dev"])
        question = rng.choice([f"What is {x} + 0?", f"What is 1 * {x}?",
                               f"{name} has {x} coins. How many coins does {name} have?"])
        answer, images = str(x), []
    modality = base.modality if images else "text"
    return Sample(id=f"pool-{seed}-{i}-{kind}", question=question, images=images, answer=answer,
                  domain=base.domain, difficulty=None, modality=modality,
                  meta={"task": "curation_pool", "kind": kind, "source": base.id})


def generate_pool(n: int, seed: int = 0, levels: tuple[int, ...] = (1, 2, 3, 4, 5), image_size: int = 48
                  ) -> list[Sample]:
    """``n`` samples: about a quarter each of shapes, shape_math, arithmetic and rendered arithmetic, with
    ``TRAP_SHARES`` of them turned into planted items; the order is shuffled by ``seed``."""
    rng = random.Random(f"pool-{seed}")
    part = n // 4 + 1
    bases = (generate_shapes(part, seed=seed, levels=levels, image_size=image_size)
             + generate_shape_math(part, seed=seed, levels=levels, image_size=image_size)
             + generate_arithmetic(part, seed=seed, levels=levels)
             + [s for s in generate_text_rendered(part, seed=seed, levels=levels, image_size=image_size)
                if s.modality == "text_rendered"])
    rng.shuffle(bases)
    kinds = [k for k, share in TRAP_SHARES.items() for _ in range(round(share * n))]
    kinds += ["regular"] * (n - len(kinds))
    rng.shuffle(kinds)
    out = []
    for i, (kind, base) in enumerate(zip(kinds, bases)):
        if kind == "regular":
            base.id, base.response = f"pool-{seed}-{i}", None
            base.meta = {**base.meta, "kind": "regular", "source": f"{base.meta.get('task')}"}
            out.append(base)
        else:
            out.append(_trap(kind, rng, base, i, seed))
    return out
