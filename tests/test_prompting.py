"""Prompt recipes: exact rendered prompts for plain and chat formats, shots, CoT, system prompts."""

from capeval.prompting import COT_TRIGGER, PromptConfig, PromptLayout, Turn, render, select_exemplars
from capeval.types import Message, Sample

LAYOUT = PromptLayout(description="Answer the questions.", answer_prefix="Answer:")


def test_plain_few_shot_prompt_and_shared_prefix():
    r = render([Turn("Q1?", "A"), Turn("Q2?", "B")], Turn("Q3?"), LAYOUT, PromptConfig())
    assert r.prompt == "Answer the questions.\n\nQ1?\nAnswer: A\n\nQ2?\nAnswer: B\n\nQ3?\nAnswer:"
    assert r.shared_prefix == "Answer the questions.\n\nQ1?\nAnswer: A\n\nQ2?\nAnswer: B\n\n"
    assert r.prompt.startswith(r.shared_prefix)


def test_zero_shot_cot_trigger_and_system_prompt():
    r = render([], Turn("Q?"), PromptLayout(answer_prefix="Answer:"), PromptConfig(cot=True, system="You are a careful grader."))
    assert r.prompt == f"You are a careful grader.\n\nQ?\nAnswer: {COT_TRIGGER}"


def test_cot_trigger_not_added_when_exemplars_carry_rationales():
    r = render([Turn("Q1?", "Because x. The answer is A.")], Turn("Q2?"), LAYOUT, PromptConfig(cot=True))
    assert COT_TRIGGER not in r.prompt


def test_chat_messages_multiturn_few_shot():
    r = render([Turn("Q1?", "A")], Turn("Q2?"), LAYOUT, PromptConfig(chat=True, system="Be brief."))
    assert r.prompt == (
        Message("system", "Be brief."),
        Message("user", "Answer the questions.\n\nQ1?\nAnswer:"),
        Message("assistant", "A"),
        Message("user", "Q2?\nAnswer:"),
    )
    assert r.shared_prefix is None
    assert "[assistant] A" in r.text


def _pool(n):
    return [Sample(str(i), "t", {"question": f"q{i}"}, 0) for i in range(n)]


def test_exemplars_fixed_by_seed_and_never_the_item():
    pool = _pool(20)
    a = select_exemplars(pool, 5, seed=7)
    assert [s.id for s in a] == [s.id for s in select_exemplars(pool, 5, seed=7)]
    assert [s.id for s in a] != [s.id for s in select_exemplars(pool, 5, seed=8)]
    for s in pool:
        chosen = select_exemplars(pool, 5, seed=7, exclude_id=s.id)
        assert len(chosen) == 5 and s.id not in {c.id for c in chosen}
    assert select_exemplars(pool, 0, seed=7) == []
