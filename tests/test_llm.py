"""The LLM interface: batching, stop strings, sampling seeds, chat, nll, seq2seq prefix, scripted fake."""
import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, MarianConfig, MarianMTModel

from instructlib.models import LLM, ScriptedLLM, load_tokenizer
from instructlib.models.llm import CausalLM, Seq2SeqLM, cut_at_stop
from instructlib.nn.gpt import GPTConfig, TinyGPT


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("tinygpt")  # the ci course tokenizer (cached by the test run)


@pytest.fixture(scope="module")
def tiny(tok):
    torch.manual_seed(0)
    return TinyGPT(GPTConfig(vocab_size=len(tok), block_size=64, n_layer=2, n_head=2, n_embd=32))


PROMPTS = ["Once upon a time", "The capital of", "a", "Sort these words: pear apple fig and then", "7 + 5 ="]


def test_batched_greedy_equals_one_prompt_at_a_time(tiny, tok, one_thread):
    llm = LLM.wrap(tiny, tok)
    assert isinstance(llm, CausalLM)
    batched = llm.complete(PROMPTS, max_new_tokens=10, batch_size=16)
    single = [llm.complete([p], max_new_tokens=10)[0] for p in PROMPTS]
    assert batched == single and len(batched) == len(PROMPTS) and any(batched)


def test_tinygpt_and_its_transformers_copy_agree_through_the_interface(tiny, tok, one_thread):
    ours = LLM.wrap(tiny, tok).complete(PROMPTS, max_new_tokens=8, batch_size=2)
    theirs = LLM.wrap(tiny.to_hf(), tok).complete(PROMPTS, max_new_tokens=8, batch_size=2)
    assert ours == theirs


def test_sampling_is_reproducible_with_a_seed_and_differs_from_greedy(tiny, tok, one_thread):
    llm = LLM.wrap(tiny, tok)
    kwargs = dict(max_new_tokens=12, temperature=1.5, top_p=1.0)
    a = llm.complete(PROMPTS, seed=3, **kwargs)
    assert a == llm.complete(PROMPTS, seed=3, **kwargs)
    assert a != llm.complete(PROMPTS, seed=4, **kwargs)
    assert a != llm.complete(PROMPTS, max_new_tokens=12)


def test_tinygpt_generate_takes_do_sample_like_transformers(tiny, tok):
    ids = tok(["Once upon"], return_tensors="pt").input_ids
    greedy = tiny.generate(ids, 6, temperature=0)
    assert torch.equal(tiny.generate(ids, 6, temperature=1.0, do_sample=False), greedy)


def test_stop_strings_cut_the_text(tiny, tok):
    assert cut_at_stop("abc\ndef###x", ("###", "\n")) == "abc"
    assert cut_at_stop("abc", ("z",)) == "abc" and cut_at_stop("abc", ()) == "abc"
    llm = LLM.wrap(tiny, tok)
    full = llm.complete(PROMPTS, max_new_tokens=16)
    for text, stopped in zip(full, llm.complete(PROMPTS, max_new_tokens=16, stop=(" ",))):
        assert stopped == text.split(" ")[0]


def test_state_is_restored(tiny, tok):
    tiny.train()
    side = tok.padding_side
    LLM.wrap(tiny, tok).complete(["x"], max_new_tokens=2)
    assert tiny.training and tok.padding_side == side
    tiny.eval()


def test_bad_settings_are_refused(tiny, tok):
    llm = LLM.wrap(tiny, tok)
    with pytest.raises(TypeError, match="list"):
        llm.complete("one prompt")
    with pytest.raises(ValueError, match="top_p"):
        llm.complete(["x"], top_p=0)
    with pytest.raises(ValueError, match="beam"):
        llm.complete(["x"], num_beams=2, max_new_tokens=2)


def test_nll_matches_a_hand_computed_sum(tiny, tok):
    llm = LLM.wrap(tiny, tok)
    texts = ["Once upon a time there was a cat", "hi"]
    scores = llm.nll(texts, batch_size=2)
    for text, (nll, n) in zip(texts, scores):
        ids = [tok.eos_token_id] + tok(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(tiny(torch.tensor([ids])).float(), -1)[0]
        expected = -sum(logp[t, ids[t + 1]].item() for t in range(len(ids) - 1))
        assert n == len(ids) - 1 and nll == pytest.approx(expected, rel=1e-4)
    assert all(math.isfinite(s) for s, _ in scores)


def test_chat_applies_the_tokenizer_template(tiny, tok):
    llm = LLM.wrap(tiny, tok)
    conv = [{"role": "user", "content": "Say hi"}]
    prompt = llm.chat_prompt(conv)
    assert "Say hi" in prompt and prompt == tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    assert llm.chat([conv], max_new_tokens=4) == llm.complete([prompt], max_new_tokens=4)


def test_transformers_causal_lm_with_beams_and_stop_strings(tok, one_thread):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.eos_token_id)
    llm = LLM.wrap(LlamaForCausalLM(cfg), tok, name="tiny-llama")
    greedy = llm.complete(PROMPTS, max_new_tokens=8, batch_size=2)
    assert greedy == [llm.complete([p], max_new_tokens=8)[0] for p in PROMPTS]
    assert len(llm.complete(PROMPTS, max_new_tokens=8, num_beams=3)) == len(PROMPTS)
    for text, stopped in zip(greedy, llm.complete(PROMPTS, max_new_tokens=8, stop=(" ",))):
        assert stopped == text.split(" ")[0]
    assert llm.nll(["hello world"])[0][1] > 0


class SpyTokenizer:
    """Wraps a tokenizer and records the texts it encodes."""

    def __init__(self, inner):
        self.inner, self.seen = inner, []

    def __call__(self, texts, **kw):
        self.seen.extend(texts)
        return self.inner(texts, **kw)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __setattr__(self, name, value):
        if name in ("inner", "seen"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.inner, name, value)


def test_seq2seq_prepends_the_target_language_token_and_batches(tok, one_thread):
    torch.manual_seed(0)
    cfg = MarianConfig(vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1,
                       encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                       decoder_ffn_dim=32, decoder_start_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id,
                       eos_token_id=tok.eos_token_id, max_position_embeddings=64)
    spy = SpyTokenizer(tok)
    llm = LLM.wrap(MarianMTModel(cfg), spy, prefix=">>cmn_Hans<< ")
    assert isinstance(llm, Seq2SeqLM)
    out = llm.complete(["Translate me", "and me too"], max_new_tokens=6, num_beams=2)
    assert len(out) == 2 and all(s.startswith(">>cmn_Hans<< ") for s in spy.seen)
    batched = llm.complete(PROMPTS, max_new_tokens=6, batch_size=4)
    assert batched == [llm.complete([p], max_new_tokens=6)[0] for p in PROMPTS]
    with pytest.raises(ValueError, match="encoder-decoder"):
        LLM.wrap(TinyGPT(GPTConfig(vocab_size=len(tok), block_size=16, n_layer=1, n_head=1, n_embd=8)), tok,
                 prefix=">>x<<")


def test_scripted_llm_answers_from_function_dict_and_list():
    fn = ScriptedLLM(lambda p: p.upper())
    assert fn.complete(["ab", "c"]) == ["AB", "C"] and fn.calls == ["ab", "c"]
    table = ScriptedLLM({"q": "answer### tail"})
    assert table.complete(["q"], stop=("###",)) == ["answer"]
    with pytest.raises(KeyError, match="no answer"):
        table.complete(["other"])
    turns = ScriptedLLM(["one", "two"])
    assert turns.complete(["a", "b", "c"], batch_size=2) == ["one", "two", "one"]
    chat = ScriptedLLM(lambda p: p)
    assert chat.chat([[{"role": "user", "content": "hi"}]]) == ["<|user|>hi\n<|assistant|>"]


def test_greedy_batches_group_prompts_by_length_and_keep_the_callers_order():
    seen = []

    class Recorder(ScriptedLLM):
        groups_by_length = True  # behave like a real model

        def _generate(self, prompts, **kw):
            seen.append(list(prompts))
            return super()._generate(prompts, **kw)

    llm = Recorder(lambda p: p[::-1])
    prompts = ["ccc", "a", "bbbbb", "dd"]
    assert llm.complete(prompts, batch_size=2) == [p[::-1] for p in prompts]
    assert seen == [["a", "dd"], ["ccc", "bbbbb"]]
    seen.clear()
    llm.complete(prompts, batch_size=2, temperature=0.7, seed=1)
    assert seen == [["ccc", "a"], ["bbbbb", "dd"]], "sampling keeps the order (seed b goes to batch b)"


def tiny_llama(tok):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.eos_token_id)
    return LLM.wrap(LlamaForCausalLM(cfg), tok, name="tiny-llama")


def test_complete_reports_why_each_text_ended(tiny, tok, one_thread):
    hf = LLM.wrap(tiny.to_hf(), tok)
    full = hf.complete(PROMPTS, max_new_tokens=6, return_finish=True)
    assert all(reason == "length" for _, reason in full)  # an untrained model never says end-of-text
    assert [t for t, _ in full] == hf.complete(PROMPTS, max_new_tokens=6)
    cut = hf.complete(PROMPTS, max_new_tokens=6, stop=(" ",), return_finish=True)
    for (text, _), (short, reason) in zip(full, cut):
        assert short == text.split(" ")[0] and reason == ("stop" if " " in text else "length")
    eos = tok.eos_token_id
    assert hf._decode([[5, 6, eos, 9], [5, 6, 7, 8], [5]], max_new_tokens=4) == [
        (tok.decode([5, 6]), "stop"), (tok.decode([5, 6, 7, 8]), "length"), (tok.decode([5]), "stop")]
    scripted = ScriptedLLM(lambda p: p + "!")
    assert scripted.complete(["a"], return_finish=True) == [("a!", "stop")]


@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_continuous_batching_equals_complete_with_joins_and_leaves(model, tiny, tok, one_thread):
    from instructlib.models.llm import ContinuousBatcher

    llm = LLM.wrap(tiny.to_hf(), tok) if model == "gpt2" else tiny_llama(tok)
    lengths = [3, 9, 1, 6, 12]
    expected = [llm.complete([p], max_new_tokens=n, return_finish=True)[0] for p, n in zip(PROMPTS, lengths)]
    batcher = ContinuousBatcher(llm)
    texts, reasons, step = {}, {}, 0
    batcher.add(0, PROMPTS[0], max_new_tokens=lengths[0])
    while len(batcher) or step < len(PROMPTS):
        step += 1
        if step < len(PROMPTS):  # one newcomer per step: rows of different lengths share a cache
            batcher.add(step, PROMPTS[step], max_new_tokens=lengths[step])
        for key, piece, reason, n in batcher.step():
            texts[key] = texts.get(key, "") + piece
            if reason is not None:
                reasons[key] = (reason, n)
    assert [(texts[k], reasons[k][0]) for k in range(len(PROMPTS))] == expected
    assert [reasons[k][1] for k in range(len(PROMPTS))] == lengths  # all ran to max_new_tokens
    assert max(batcher.forward_sizes) > 1 and len(batcher) == 0 and batcher.owner is None and not batcher.kv


def test_continuous_batching_stop_strings_and_seeded_sampling(tiny, tok, one_thread):
    from instructlib.models.llm import ContinuousBatcher

    llm = LLM.wrap(tiny.to_hf(), tok)

    def run(jobs):
        batcher, out = ContinuousBatcher(llm), {}
        for key, prompt, kw in jobs:
            batcher.add(key, prompt, **kw)
        pieces = []
        while len(batcher):
            for key, piece, reason, _ in batcher.step():
                out[key] = out.get(key, "") + piece
                pieces.append((key, piece))
        return out, pieces

    full = llm.complete(PROMPTS, max_new_tokens=12)
    out, pieces = run([(k, p, dict(max_new_tokens=12, stop=(" ",))) for k, p in enumerate(PROMPTS)])
    assert [out[k] for k in range(len(PROMPTS))] == [t.split(" ")[0] for t in full]
    assert not any(" " in piece for _, piece in pieces)  # a stop string is never sent, not even in part
    sampled = dict(max_new_tokens=10, temperature=1.5, seed=7)
    alone, _ = run([("a", PROMPTS[1], sampled)])
    crowded, _ = run([("x", PROMPTS[0], dict(max_new_tokens=10, temperature=1.0, seed=1)), ("a", PROMPTS[1], sampled)])
    assert alone["a"] == crowded["a"]  # a seeded answer does not depend on who shares the steps
    with pytest.raises(ValueError, match="does not fit"):
        ContinuousBatcher(llm).add("long", "word " * 200, max_new_tokens=4)
    with pytest.raises(TypeError):
        ContinuousBatcher(LLM.wrap(tiny, tok))  # TinyGPT itself has no key/value cache interface


@pytest.mark.parametrize("model,attention", [("gpt2", "sdpa"), ("gpt2", "eager"), ("llama", "sdpa"), ("llama", "eager")])
def test_continuous_batching_packs_sequences_into_one_forward(model, attention, tiny, tok, one_thread):
    from instructlib.models.llm import ContinuousBatcher

    llm = LLM.wrap(tiny.to_hf(), tok) if model == "gpt2" else tiny_llama(tok)
    llm.model.set_attn_implementation(attention)
    prompts = PROMPTS + [p + " again" for p in PROMPTS]  # 10 sequences x (prompt + 20 tokens) > the 64-token context
    expected = llm.complete(prompts, max_new_tokens=20, batch_size=1)
    batcher = ContinuousBatcher(llm)
    for k, p in enumerate(prompts):
        batcher.add(k, p, max_new_tokens=20)
    texts = {}
    while len(batcher):
        for key, piece, _, _ in batcher.step():
            texts[key] = texts.get(key, "") + piece
    assert [texts[k] for k in range(len(prompts))] == expected
    assert batcher.forward_sizes == [len(prompts)] * 20  # prefill and every decode step: one pass for all


def test_continuous_batching_refuses_attention_without_custom_masks(tiny, tok):
    from instructlib.models.llm import ContinuousBatcher, supports_continuous_batching

    llm = LLM.wrap(tiny.to_hf(), tok)
    assert supports_continuous_batching(llm)
    llm.model.config._attn_implementation_internal = "flash_attention_2"  # takes no 4-D mask
    assert not supports_continuous_batching(llm)
    with pytest.raises(TypeError, match="sdpa or eager"):
        ContinuousBatcher(llm)
