import torch

from tests.conftest import tiny_model_config
from vlrl.data.synth import generate as synth
from vlrl.inference import Predictor
from vlrl.models import build_vlm


def test_streamed_pieces_add_up_to_the_answer_even_with_broken_bytes():
    # random models often emit lone UTF-8 continuation bytes; the stream must still end equal to the answer
    for seed in range(8):
        torch.manual_seed(seed)
        model, proc = build_vlm(tiny_model_config())
        p = Predictor(model.eval(), proc)
        pieces = []
        answer = p.answer("How many shapes?", images=synth("shapes", 1)[0].images, max_new_tokens=6,
                          stream=pieces.append)
        assert "".join(pieces) == answer


def test_answer_samples_matches_single_answers_for_mixed_batches(tiny):
    model, proc = tiny
    p = Predictor(model.eval(), proc)
    samples = synth("shapes", 2) + synth("arithmetic", 2) + synth("text_rendered", 1)
    batched = p.answer_samples(samples, batch_size=3, max_new_tokens=5)
    single = [p.answer(s.question, images=s.images, max_new_tokens=5) for s in samples]
    assert batched == single  # left padding and mixed modalities do not change greedy answers
