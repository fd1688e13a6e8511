"""Chapter 08's instruction rewriting: the prompt, every filter, machine demonstrations, no test wording kept."""
from instructlib.data.wordings import guard_wordings, load_wordings
from instructlib.generate.self_instruct.rewrite import RewriteRecipe, build_rewrites, rewrite_prompt

SEEDS = {"comma_list": ["Separate the words with commas.", "Join the words using commas."]}


class ScriptedLLM:
    """Returns scripted (text, finish) pairs in order and records the prompts it was given."""

    def __init__(self, outputs):
        self.outputs, self.prompts = list(outputs), []

    def complete(self, prompts, **kwargs):
        assert kwargs["return_finish"] and kwargs["stop"] == ["\n"]
        self.prompts += prompts
        return [self.outputs.pop(0) for _ in prompts]


def test_prompt_is_a_numbered_list_open_at_the_next_number():
    assert rewrite_prompt(["A b c.", "D e f."]).endswith("1. A b c.\n2. D e f.\n3.")


def test_each_filter_drops_what_it_should_and_keeps_the_rest():
    heldout = guard_wordings("comma_list")[0]
    outputs = [(" Put commas between all of the words", "length"),     # cut at the token limit
               (" Commas.", "stop"),                                    # too short
               (" Repeat steps 5 and 6 with commas.", "stop"),          # a number
               (" reverse the order of the words.", "stop"),            # not a sentence
               (" Write the words out with a comma after each one.", "stop"),   # kept
               (f" {heldout}", "stop"),                                 # a test wording
               (" Tell me a joke about cats.", "stop"),                 # no task word
               (" Separate the words with commas please.", "stop"),     # near-duplicate of a seed
               (" Write the words out with a comma after each.", "stop")]       # near-duplicate of a kept one
    llm = ScriptedLLM(outputs)
    pool = build_rewrites(llm, SEEDS, RewriteRecipe(samples=9, batch=3, demos=2, machine=1),
                          guard={"comma_list": guard_wordings("comma_list")})
    assert pool.rewrites == {"comma_list": ["Write the words out with a comma after each one."]}
    reasons = [r.get("reason") for r in pool.candidates]
    assert reasons == ["cut at the token limit", "too short", "has a number", "not a sentence", None,
                       "close to a test wording", "no task word", "near-duplicate", "near-duplicate"]
    assert pool.funnel.kept["novelty"] == 1 and pool.funnel.entered("complete") == 9
    # the last batch was sampled after the second kept a rewrite: each of its prompts shows it (machine=1)
    assert all("Write the words out with a comma after each one." in p for p in llm.prompts[6:])
    assert not any("Write the words out" in p for p in llm.prompts[:6])


def test_guard_is_every_heldout_and_novel_wording():
    bank = load_wordings("repeat_word")
    assert guard_wordings("repeat_word") == list(bank.heldout) + list(bank.novel)
