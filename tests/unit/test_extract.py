from vlrl.rewards.extract import extract_answer


def test_extraction_forms():
    assert extract_answer("so it is 3. Answer: 7") == "7"
    assert extract_answer("Answer: 2\nAnswer: 5.") == "5"
    assert extract_answer(r"thus \boxed{\frac{1}{2}} done") == r"\frac{1}{2}"
    assert extract_answer("The answer is 12") == "12"
    assert extract_answer("no idea") is None
    assert extract_answer("Answer:   ") is None and extract_answer("Answer: .") is None
    assert extract_answer("result=<41>", pattern=r"<(\d+)>") == "41"
