"""Prompt rendering: Alpaca exactly as the reference text, chat templates split at the assistant turn."""
import pytest

from instructlib.data import Record
from instructlib.data.prompts import render_for_inference, render_for_training

# The reference Alpaca templates (COURSE.md section 8, from Stanford Alpaca), written out in full here so a
# change to the library's constants cannot silently change the expected text.
ALPACA_NO_INPUT = ("Below is an instruction that describes a task. Write a response that appropriately completes "
                   "the request.\n\n### Instruction:\nName a colour.\n\n### Response:\n")
ALPACA_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further "
                "context. Write a response that appropriately completes the request.\n\n### Instruction:\n"
                "Translate into French.\n\n### Input:\nI like tea.\n\n### Response:\n")


def test_alpaca_without_and_with_input():
    prompt, response = render_for_training(Record("Name a colour.", "", "Blue."))
    assert (prompt, response) == (ALPACA_NO_INPUT, "Blue.")
    record = Record("Translate into French.", "I like tea.", "J'aime le thé.")
    assert render_for_training(record) == (ALPACA_INPUT, "J'aime le thé.")
    assert render_for_inference(record) == ALPACA_INPUT


def test_unknown_template_and_missing_tokenizer():
    with pytest.raises(ValueError, match="unknown template"):
        render_for_training(Record("a", "", "b"), template="vicuna")
    with pytest.raises(ValueError, match="needs a tokenizer"):
        render_for_inference(Record("a", "", "b"), template="chat")


@pytest.fixture(scope="module")
def tokenizer():
    from instructlib.models import load_tokenizer

    return load_tokenizer("smollm2-135m-instruct")


@pytest.mark.parametrize("record", [Record("Name a colour.", "", "Blue."),
                                    Record("Translate into French.", "I like tea.", "J'aime le thé.\n"),
                                    Record("把句子翻译成英文。", "我喜欢茶。", "I like tea.")])
def test_chat_template_split_with_smollm2(tokenizer, record):
    prompt, response = render_for_training(record, template="chat", tokenizer=tokenizer)
    messages = [{"role": "user", "content": record.instruction + ("\n\n" + record.input if record.input else "")},
                {"role": "assistant", "content": record.output}]
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    # prompt + response is the full chat text up to (not including) the end-of-turn token
    assert response == record.output
    assert full.startswith(prompt + response + tokenizer.eos_token)
    assert full[len(prompt + response + tokenizer.eos_token):].strip() == ""
    assert prompt.endswith("<|im_start|>assistant\n")
    assert render_for_inference(record, template="chat", tokenizer=tokenizer) == prompt
    # the prompt is what apply_chat_template builds for generation
    assert prompt == tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)


def test_few_shot_prompts(tokenizer):
    demos = [Record("Say if the number is even or odd.", "2", "even"), Record("Say if the number is even or odd.", "3", "odd")]
    query = Record("Say if the number is even or odd.", "8", "")
    from instructlib.data.prompts import few_shot_messages, few_shot_prompt

    assert few_shot_prompt([], query) == render_for_inference(query)  # zero-shot is the plain prompt
    alpaca = few_shot_prompt(demos, query)
    assert alpaca.count("### Response:") == 3 and alpaca.endswith(render_for_inference(query))
    assert alpaca.startswith("".join(render_for_training(demos[0])) + "\n\n")
    msgs = few_shot_messages(demos, query)
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
    assert msgs[1]["content"] == "even" and msgs[-1]["content"] == "Say if the number is even or odd.\n\n8"
    chat = few_shot_prompt(demos, query, template="chat", tokenizer=tokenizer)
    assert chat == tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def test_score_choices_matches_a_direct_forward_pass(tokenizer):
    import torch

    from instructlib.data.prompts import score_choices
    from instructlib.models import load_model

    model = load_model("smollm2-135m-instruct")
    prompts = [few_shot_prompt_zero(tokenizer, "Is the number even or odd?", "7"),
               few_shot_prompt_zero(tokenizer, "Name the sentiment: positive or negative.", "I hated the long, boring film.")]
    choices = [["even", "odd"], ["positive", "negative", "neutral"]]
    scores = score_choices(model, tokenizer, prompts, choices)
    assert [len(s) for s in scores] == [2, 3]
    # a direct computation for one choice
    p_ids = tokenizer(prompts[1], add_special_tokens=False)["input_ids"]
    c_ids = tokenizer("negative" + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = model(torch.tensor([p_ids + c_ids])).logits[0].log_softmax(-1)
    direct = sum(logp[len(p_ids) + k - 1, t].item() for k, t in enumerate(c_ids))
    assert scores[1][1] == pytest.approx(direct, abs=1e-3)  # the KV-cache shortcut changes nothing
    assert all(s < 0 for row in scores for s in row)
    assert score_choices(model, tokenizer, prompts[:1], [["odd", "even"]])[0] == pytest.approx(scores[0][::-1], abs=1e-4)


def few_shot_prompt_zero(tokenizer, instruction, input_):
    from instructlib.data.prompts import few_shot_prompt

    return few_shot_prompt([], Record(instruction, input_, ""), template="chat", tokenizer=tokenizer)


def test_score_choices_uses_the_supported_cache_argument(tokenizer):
    """transformers 5.24 renamed the forward argument `past_key_values` to `cache` (the old name goes in
    5.40). score_choices passes whichever the installed version's forward accepts, and warns about neither."""
    import inspect
    import warnings

    import torch
    import transformers

    from instructlib.data.prompts import cache_keyword, score_choices
    from instructlib.models import load_model

    model = load_model("smollm2-135m-instruct")
    params = inspect.signature(model.forward).parameters
    expected = "cache" if "cache" in params else "past_key_values"
    assert cache_keyword(model) == expected
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    if (major, minor) >= (5, 24):
        assert expected == "cache", transformers.__version__
    prompt = few_shot_prompt_zero(tokenizer, "Is the number even or odd?", "7")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = score_choices(model, tokenizer, [prompt], [["even", "odd", "not a number"]], progress=False)[0]
    deprecations = [str(w.message) for w in caught if "past_key_values" in str(w.message) or "cache" in str(w.message)]
    assert not deprecations, deprecations
    # without any cache at all: one full forward pass per choice gives the same numbers
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    for choice, score in zip(["even", "odd", "not a number"], scores):
        c_ids = tokenizer(choice + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = model(torch.tensor([p_ids + c_ids]), use_cache=False).logits[0].float().log_softmax(-1)
        assert score == pytest.approx(sum(logp[len(p_ids) + k - 1, t].item() for k, t in enumerate(c_ids)), abs=1e-3)
