from vlrl.rewards import REWARDS
from vlrl.rewards.critic import CRITIC_PROMPT, parse_verdict
from vlrl.types import Sample


def test_parse_verdict():
    assert parse_verdict('The answers agree.\n{"correct": true}') is True
    assert parse_verdict('{"correct": true} wait, no: {"correct": false}') is False  # the last verdict counts
    assert parse_verdict('{"correct": "yes"}') is None and parse_verdict("looks right") is None
    assert parse_verdict('{bad json} {"correct": false}') is False


class ScriptedCritic:
    def __init__(self, reply):
        self.reply, self.prompts = reply, []

    def answer(self, prompt, images, max_new_tokens):
        self.prompts.append((prompt, images))
        return self.reply


def test_critic_reads_question_reference_response_and_images():
    critic = ScriptedCritic('Both say a dog.\n{"correct": true}')
    fn = REWARDS.build("critic", model=critic)
    s = Sample(id="c1", question="What animal is shown?", images=["dog.png"], answer="a dog")
    r = fn("It is a puppy.", s)
    assert r.reward == 1.0 and r.error is None
    prompt, images = critic.prompts[0]
    assert prompt == CRITIC_PROMPT.format(question="What animal is shown?", answer="a dog", response="It is a puppy.")
    assert images == ["dog.png"]
    bad = REWARDS.build("critic", model=ScriptedCritic("hmm, hard to say"))
    r = bad("x", s)
    assert r.error is not None and "no JSON verdict" in r.error and bad.stats["no_verdict"] == 1


def test_router_dispatches_on_domain():
    fn = REWARDS.build("router", routes={"captioning": {"name": "critic", "kwargs": {"model": ScriptedCritic('{"correct": false}')}}},
                       default={"name": "math", "kwargs": {"symbolic": False}})
    assert fn("Answer: 4", Sample(id="a", question="2+2?", answer="4", domain="arithmetic")).reward == 1.0
    assert fn("Answer: 4", Sample(id="b", question="?", answer="4", domain="captioning")).reward == 0.0
    strict = REWARDS.build("router", routes={"counting": {"name": "math"}})
    r = strict("Answer: 1", Sample(id="c", question="?", answer="1", domain="poetry"))
    assert r.error is not None and "no reward route for domain 'poetry'" in r.error
