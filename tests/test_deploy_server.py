"""Chapter 10 server: the real openai client against `instructlib serve` on a free loopback port
(models, completions, chat, streaming, errors, hot-swap and rollback), plus batching and overload."""
import asyncio
import concurrent.futures
import json
import threading
import time

import httpx
import openai
import pytest

from deploy_helpers import make_adapter, make_tiny_model_dir, server_process, server_thread
from instructlib.deploy.feedback import AdapterRegistry
from instructlib.deploy.server import Engine, Overloaded, ServerConfig, wait_ready
from instructlib.models.llm import ScriptedLLM

PROMPTS = ["Add the two numbers.", "Reverse the order of the words.", "What is the capital", "Sort the numbers"]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """One server process for the module: tiny model, a registry with two adapters, logs on."""
    root = tmp_path_factory.mktemp("serve")
    model_dir = make_tiny_model_dir(root / "model")
    registry = AdapterRegistry(root / "adapters")
    for seed in (1, 2):
        registry.add(make_adapter(model_dir, root / f"adapter{seed}", seed), {"note": f"seed {seed}"})
    with server_process("--model", str(model_dir), "--name", "tiny", "--adapter-registry", str(root / "adapters"),
                        "--log-dir", str(root / "logs")) as (base, proc):
        yield {"base": base, "proc": proc, "root": root,
               "client": openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=60)}


GREEDY_FIXED_LENGTH = dict(temperature=0.0, top_p=1.0, stop=(), seed=None, ignore_eos=True)  # Engine.enqueue settings


def started_engine(llm, **kwargs) -> Engine:
    """An Engine serving ``llm`` with its generation thread running (call inside an event loop)."""
    engine = Engine(**kwargs)
    engine.set_llm(llm)
    engine.start()
    return engine


def complete_all(client, prompts, **kw):
    return [client.completions.create(model="tiny", prompt=p, max_tokens=6, temperature=0, **kw).choices[0].text
            for p in prompts]


def test_models_and_readiness(live):
    assert [m.id for m in live["client"].models.list().data] == ["tiny"]
    body = httpx.get(live["base"] + "/ready").json()
    assert body["status"] == "ready" and body["model"] == "tiny"
    assert httpx.get(live["base"] + "/health").json() == {"status": "ok"}


def test_completion_and_chat(live):
    client = live["client"]
    out = client.completions.create(model="tiny", prompt="Add the two numbers.", max_tokens=5, temperature=0)
    assert out.object == "text_completion" and out.id.startswith("cmpl-")
    assert out.choices[0].finish_reason in ("stop", "length")
    assert 0 < out.usage.prompt_tokens and out.usage.completion_tokens <= 5
    chat = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Add the two numbers."}],
                                          max_tokens=5, temperature=0)
    assert chat.object == "chat.completion" and chat.choices[0].message.role == "assistant"
    assert isinstance(chat.choices[0].message.content, str)
    # greedy decoding is deterministic
    again = client.completions.create(model="tiny", prompt="Add the two numbers.", max_tokens=5, temperature=0)
    assert again.choices[0].text == out.choices[0].text


def test_streaming_equals_non_streaming(live):
    client = live["client"]
    messages = [{"role": "user", "content": "Reverse the order of the words.\n\napple bread chair"}]
    whole = client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, temperature=0)
    chunks = list(client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, temperature=0,
                                                 stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert len(chunks) >= 3  # role chunk, content pieces, final chunk
    stream = client.completions.create(model="tiny", prompt="Sort the numbers", max_tokens=6, temperature=0, stream=True)
    pieces = [c.choices[0].text for c in stream]
    assert "".join(pieces) == complete_all(client, ["Sort the numbers"])[0]


@pytest.mark.parametrize("body,status,param", [
    (b"{not json", 400, None),
    (json.dumps({"prompt": "hi"}).encode(), 400, "model"),
    (json.dumps({"model": "tiny"}).encode(), 400, "prompt"),
    (json.dumps({"model": "tiny", "prompt": "hi", "max_tokens": "ten"}).encode(), 400, "max_tokens"),
    (json.dumps({"model": "tiny", "prompt": 42}).encode(), 400, "prompt"),
    (json.dumps({"model": "tiny", "prompt": "hi", "temperature": 9}).encode(), 400, "temperature"),
    (json.dumps({"model": "gpt-4", "prompt": "hi"}).encode(), 404, "model"),
    (json.dumps({"model": "tiny", "prompt": "apple " * 200}).encode(), 400, "prompt"),
    (json.dumps({"model": "tiny", "prompt": "hi", "max_tokens": 10 ** 9}).encode(), 400, "max_tokens"),
    (json.dumps({"model": "tiny", "prompt": "hi", "max_tokens": 0}).encode(), 400, "max_tokens"),
    (json.dumps({"model": "tiny", "prompt": "hi", "n": 3}).encode(), 400, "n"),
])
def test_bad_input_gets_openai_error_and_server_keeps_serving(live, body, status, param):
    r = httpx.post(live["base"] + "/v1/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["param"] == param
    assert complete_all(live["client"], PROMPTS[:1])  # still serving


def test_openai_client_raises_typed_errors(live):
    client = live["client"]
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="hi")
    with pytest.raises(openai.BadRequestError, match="context length"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "apple " * 200}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=[])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=[{"role": "wizard", "content": "hi"}])


def test_concurrent_requests_get_the_same_answers_as_sequential(live):
    client = live["client"]
    prompts = PROMPTS * 4
    sequential = complete_all(client, prompts)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        concurrent_ = list(pool.map(lambda p: complete_all(client, [p])[0], prompts))
    assert concurrent_ == sequential  # left-padded batches change nothing under greedy decoding


def test_hot_swap_and_rollback_without_restart(live):
    client, base, pid = live["client"], live["base"], live["proc"].pid
    base_answers = complete_all(client, PROMPTS)
    listing = httpx.get(base + "/v1/adapters").json()
    assert [v["version"] for v in listing["data"]] == ["v0001", "v0002"] and listing["active"] is None
    assert httpx.post(base + "/v1/adapters/activate", json={"version": "v0001"}).json()["active"] == "v0001"
    v1 = complete_all(client, PROMPTS)
    assert v1 != base_answers, "adapter v0001 should change the answers"
    assert httpx.post(base + "/v1/adapters/activate", json={"version": "v0002"}).json()["active"] == "v0002"
    v2 = complete_all(client, PROMPTS)
    assert v2 != v1
    assert httpx.get(base + "/ready").json()["adapter"] == "v0002"
    r = httpx.post(base + "/v1/adapters/rollback")
    assert r.json()["active"] == "v0001"
    assert complete_all(client, PROMPTS) == v1
    assert httpx.post(base + "/v1/adapters/rollback").json()["active"] is None
    assert complete_all(client, PROMPTS) == base_answers
    r = httpx.post(base + "/v1/adapters/activate", json={"version": "v0099"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_version"
    assert live["proc"].poll() is None and live["proc"].pid == pid  # same process throughout
    registry = AdapterRegistry(live["root"] / "adapters")
    assert registry.current() is None


def test_feedback_endpoint_validates(live):
    base, client = live["base"], live["client"]
    out = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Add the two numbers."}],
                                         max_tokens=4, temperature=0)
    ok = httpx.post(base + "/v1/feedback", json={"request_id": out.id, "rating": "down", "correction": "57"})
    assert ok.status_code == 200 and ok.json()["request_id"] == out.id
    assert httpx.post(base + "/v1/feedback", json={"request_id": "chatcmpl-unknown", "rating": "up"}).status_code == 404
    assert httpx.post(base + "/v1/feedback", json={"request_id": out.id, "rating": 5}).status_code == 400
    assert httpx.post(base + "/v1/feedback", json={"request_id": out.id}).status_code == 400


# --- batching and overload, in-process with a scripted model -----------------------------------

class SlowScripted(ScriptedLLM):
    """Answers 'echo: <prompt>' and takes 0.2 s per batch (whatever its size), like a batched model."""

    def _generate(self, prompts, **kw):
        time.sleep(0.2)
        return super()._generate(prompts, **kw)


def test_dynamic_batching_groups_concurrent_requests():
    llm = SlowScripted(lambda p: "echo: " + p)
    config = ServerConfig(model_name="s", load=lambda: llm, batch_wait_ms=50, max_queue=64)
    with server_thread(config) as base:
        def ask(i):
            r = httpx.post(base + "/v1/completions", json={"model": "s", "prompt": f"p{i}", "temperature": 0}, timeout=30)
            return r.json()["choices"][0]["text"]

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, range(16)))
        stats = httpx.get(base + "/stats").json()
    assert answers == [f"echo: p{i}" for i in range(16)]  # every answer goes back to its own request
    assert stats["requests"] == 16 and stats["max_batch"] > 1 and stats["batches"] < 16


def test_full_queue_answers_429_not_an_unbounded_wait():
    llm = SlowScripted(lambda p: "ok")
    config = ServerConfig(model_name="s", load=lambda: llm, batch_wait_ms=300, max_queue=2)
    with server_thread(config) as base:
        def ask(i):
            return httpx.post(base + "/v1/completions", json={"model": "s", "prompt": "x"}, timeout=30)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(ask, range(8)))
        codes = sorted(r.status_code for r in responses)
        assert codes.count(200) >= 1 and codes.count(429) >= 1 and set(codes) <= {200, 429}
        rejected = next(r for r in responses if r.status_code == 429)
        assert rejected.json()["error"]["type"] == "rate_limit_error" and rejected.headers["retry-after"]
        assert httpx.post(base + "/v1/completions", json={"model": "s", "prompt": "x"}, timeout=30).status_code == 200


def test_not_ready_answers_503():
    def never():
        time.sleep(3600)

    with server_thread(ServerConfig(model_name="s", load=never), ready=False) as base:
        r = httpx.get(base + "/ready", timeout=2)
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
        r = httpx.post(base + "/v1/completions", json={"model": "s", "prompt": "x"})
        assert r.status_code == 503


def test_models_lists_nothing_until_the_model_is_ready():
    gate = threading.Event()

    def load():
        gate.wait(60)
        return ScriptedLLM(lambda p: "ok")

    with server_thread(ServerConfig(model_name="s", load=load), ready=False) as base:
        try:
            client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=30)
            assert client.models.list().data == []
            for path, body in [("/v1/completions", {"prompt": "x"}),
                               ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]})]:
                r = httpx.post(base + path, json={"model": "s", **body})
                assert r.status_code == 503 and r.headers["retry-after"], path
                assert r.json() == {"error": {"message": "The model is still loading; retry shortly.",
                                              "type": "server_error", "param": None, "code": "not_ready"}}
            with pytest.raises(openai.InternalServerError):
                client.completions.create(model="s", prompt="x")
        finally:
            gate.set()
        wait_ready(base, timeout=30)
        assert [m.id for m in client.models.list().data] == ["s"]
        assert client.completions.create(model="s", prompt="x").choices[0].text == "ok"


def test_engine_overload_is_immediate():
    async def main():
        engine = Engine(max_batch_size=4, batch_wait_ms=200, max_queue=1)
        engine.set_llm(ScriptedLLM(lambda p: p))
        engine.start()
        settings = dict(max_tokens=4, temperature=0.0, top_p=1.0, stop=(), seed=None)
        first = asyncio.create_task(engine.submit("a", **settings))
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded):
            await engine.submit("b", **settings)
        assert await first == "a"
        engine.shutdown()

    asyncio.run(main())


def test_cli_refuses_bad_arguments_without_traceback(tmp_path, capsys):
    from instructlib.cli import main

    assert main(["serve", "--model", str(tmp_path / "missing")]) == 2
    assert main(["serve", "--model", "tinygpt", "--adapter", str(tmp_path), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "--model: " in err and "neither a course model name" in err
    assert "--adapter: " in err and "adapter_config.json" in err and "--port: 0" in err
    assert "Traceback" not in err


def test_finish_reason_and_ignore_eos_through_the_api(live):
    client = live["client"]
    out = client.completions.create(model="tiny", prompt="Sort the numbers", max_tokens=7, temperature=0,
                                    extra_body={"ignore_eos": True})
    assert out.choices[0].finish_reason == "length" and out.usage.completion_tokens == 7
    several = client.completions.create(model="tiny", prompt=PROMPTS[:3], max_tokens=5, temperature=0)
    assert [c.index for c in several.choices] == [0, 1, 2]
    assert [c.text for c in several.choices] == [client.completions.create(
        model="tiny", prompt=p, max_tokens=5, temperature=0).choices[0].text for p in PROMPTS[:3]]
    stream = client.completions.create(model="tiny", prompt=PROMPTS[:2], max_tokens=5, temperature=0, stream=True)
    texts = {}
    for chunk in stream:
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + c.text
    assert [texts[0], texts[1]] == [c.text for c in client.completions.create(
        model="tiny", prompt=PROMPTS[:2], max_tokens=5, temperature=0).choices]


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from instructlib.models import LLM

    path = make_tiny_model_dir(tmp_path_factory.mktemp("engine") / "model")
    return LLM.wrap(AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path))


def test_iteration_level_batching_streams_and_never_holds_a_short_answer_back(tiny_llm):
    async def main():
        engine = started_engine(tiny_llm, max_batch_size=8, max_queue=8)
        long_job = engine.enqueue("Add the two numbers.", max_tokens=40, **GREEDY_FIXED_LENGTH)
        long_events = engine.events(long_job)
        first = await long_events.__anext__()  # the first token arrives on its own
        short_job = engine.enqueue("What is the capital", max_tokens=2, **GREEDY_FIXED_LENGTH)
        order = []

        async def drain(name, events, pieces):
            async for piece, reason, n in events:
                pieces.append(piece)
            order.append((name, reason, n))

        long_pieces, short_pieces = [first[0]], []
        await asyncio.wait_for(asyncio.gather(drain("long", long_events, long_pieces),
                                              drain("short", engine.events(short_job), short_pieces)), 120)
        engine.shutdown()
        return first, order, long_pieces, engine.batches

    first, order, long_pieces, passes = asyncio.run(main())
    assert first[1] is None and first[2] == 1
    assert order == [("short", "length", 2), ("long", "length", 40)]  # the short one left first
    assert len([p for p in long_pieces if p]) >= 10  # sent piece by piece as generated, not in one block
    assert max(passes) == 2  # the two shared decode steps


def test_ignore_eos_is_refused_for_static_models():
    config = ServerConfig(model_name="s", load=lambda: ScriptedLLM(lambda p: "ok"))
    with server_thread(config) as base:
        r = httpx.post(base + "/v1/completions", json={"model": "s", "prompt": "x", "ignore_eos": True})
        assert r.status_code == 400 and r.json()["error"]["param"] == "ignore_eos"
        ok = httpx.post(base + "/v1/completions", json={"model": "s", "prompt": "x"}).json()
        assert ok["choices"][0]["text"] == "ok" and ok["choices"][0]["finish_reason"] == "stop"


def test_a_client_that_leaves_mid_stream_frees_its_place(tiny_llm):
    async def main():
        engine = started_engine(tiny_llm, max_batch_size=4, max_queue=1)
        job = engine.enqueue("Add the two numbers.", max_tokens=50, **GREEDY_FIXED_LENGTH)
        events = engine.events(job)
        await events.__anext__()
        with pytest.raises(Overloaded):  # the one place in the queue is taken
            engine.enqueue("x", max_tokens=2, **GREEDY_FIXED_LENGTH)
        await events.aclose()  # the client disconnects after one token
        for _ in range(600):
            if engine._pending == 0:
                break
            await asyncio.sleep(0.05)
        text = await engine.submit("What is the capital", max_tokens=3, **GREEDY_FIXED_LENGTH)
        engine.shutdown()
        return job.cancelled, text, sum(engine.batches)

    cancelled, text, rows = asyncio.run(main())
    assert cancelled and isinstance(text, str)
    assert rows < 50  # the abandoned sequence was dropped, not decoded to its 50 tokens


def test_a_non_streaming_job_is_handed_over_once(tiny_llm):
    async def main():
        engine = started_engine(tiny_llm, max_batch_size=4, max_queue=4)
        streamed = await engine.generate("Add the two numbers.", max_tokens=12, **GREEDY_FIXED_LENGTH)
        job = engine.enqueue("Add the two numbers.", max_tokens=12, stream=False, **GREEDY_FIXED_LENGTH)
        events = [e async for e in engine.events(job)]
        engine.shutdown()
        return streamed, events, engine._pending

    streamed, events, pending = asyncio.run(main())
    assert events == [(streamed[0], "length", 12)] and pending == 0  # the whole text in one event, place freed


def test_engine_tokenizes_like_the_tokenizer(tiny_llm):
    engine = Engine()
    engine.set_llm(tiny_llm)
    for text in ["Add the two numbers.\n\n3 4", "  two  spaces ", "中文 和 English", "### Response:\n"]:
        assert engine.encode(text) == tiny_llm.tokenizer(text, add_special_tokens=False)["input_ids"]
