"""Chapter 10: an OpenAI-compatible HTTP server over the course's ``LLM`` interface, with dynamic batching.

Endpoints: ``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions`` (both with
``"stream": true`` as server-sent events), ``POST /v1/feedback`` (see ``feedback.py``), ``GET /health``
(the process is up), ``GET /ready`` (the model is loaded: 200, else 503), ``GET /stats`` (batch
sizes so far), and, when an adapter
registry is configured, ``GET /v1/adapters``, ``POST /v1/adapters/activate``, ``POST /v1/adapters/rollback``.

**Dynamic batching.** Every request becomes a job in one bounded queue. A single worker takes the
first waiting job, collects whatever else arrives within ``batch_wait_ms`` (up to ``max_batch_size``),
and generates all of them in one ``llm.complete`` call (chat requests are rendered to prompts first,
so chat and completion requests share batches); jobs whose sampling settings differ go in separate
calls. While a batch is generating, new jobs wait in the queue and form the next batch. On a CPU a
batch of 8 costs little more than one sequence, which is where the throughput comes from.

**Overload.** The queue holds at most ``max_queue`` jobs; one more gets ``429`` at once instead of an
unbounded wait. Before the model is loaded, generation endpoints answer ``503``.

**Streaming.** ``LLM.complete`` returns whole strings, so a streamed answer is sent token by token
*after* its batch finishes: the wire format is OpenAI's, the time to the first token is not better
than without streaming. (Token-level streaming out of a batch needs a decode loop that yields per
step; the course keeps one generation loop, inside ``LLM``.)

**Errors** are OpenAI-shaped: ``{"error": {"message", "type", "param", "code"}}`` with 400 for
malformed JSON, missing or mistyped fields, too-long prompts and impossible ``max_tokens``, 404 for
an unknown model or request id; the server keeps serving.

FastAPI + uvicorn: pydantic validation, an asyncio event loop for many waiting connections, and
``StreamingResponse`` for SSE, all well kept and already what the Python serving ecosystem uses.
"""
from __future__ import annotations

import asyncio
import copy
from contextlib import asynccontextmanager
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Optional, Union

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_MAX_TOKENS = 16


class APIError(Exception):
    """An error answered with an OpenAI-style JSON body."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: Optional[str] = None, code: Optional[str] = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict:
        """The JSON body OpenAI clients parse."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


# --- request schemas (strict: "10" is not an integer) -----------------------------------------

class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")

    model: str
    max_tokens: Optional[int] = None
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = 1
    stream: bool = False
    stop: Optional[Union[str, list[str]]] = None
    seed: Optional[int] = None
    user: Optional[str] = None
    stream_options: Optional[dict] = None


class CompletionRequest(_Request):
    """Body of ``POST /v1/completions``."""

    prompt: Union[str, list[str]]


class Message(BaseModel):
    """One chat message."""

    model_config = ConfigDict(strict=True, extra="allow")
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(_Request):
    """Body of ``POST /v1/chat/completions``."""

    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: Optional[int] = None


class FeedbackRequest(BaseModel):
    """Body of ``POST /v1/feedback``: which answer, thumbs up or down, and optionally the right answer."""

    model_config = ConfigDict(strict=True, extra="forbid")
    request_id: str = Field(min_length=1, max_length=100)
    rating: Literal["up", "down"]
    correction: Optional[str] = Field(None, max_length=2000)


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def parse_body(raw: bytes, schema: type[BaseModel]) -> BaseModel:
    """Parse and validate a JSON body, or raise ``APIError(400)`` naming the offending field."""
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise APIError(400, f"We could not parse the JSON body of your request: {e}", code="invalid_json")
    if not isinstance(obj, dict):
        raise APIError(400, "The request body must be a JSON object.", code="invalid_json")
    try:
        return schema.model_validate(obj)
    except ValidationError as e:
        first = e.errors()[0]
        # drop the union-branch tags pydantic adds to a location ("prompt.str" -> "prompt")
        parts = [str(p) for p in first["loc"] if isinstance(p, int) or (str(p).isidentifier() and p not in _TYPE_TAGS)]
        param = ".".join(parts) or None
        kind = "missing_required_parameter" if first["type"] == "missing" else "invalid_type"
        raise APIError(400, f"Invalid value for '{param}': {first['msg']}.", param=param, code=kind)


# --- the batching engine -------------------------------------------------------------------------

@dataclass
class Job:
    """One prompt waiting to be generated, with the future its HTTP handler awaits."""

    prompt: str
    max_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: Optional[int]
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)

    def key(self) -> tuple:
        """Jobs with equal keys can share one ``llm.complete`` call."""
        return (self.max_tokens, self.temperature, self.top_p, self.stop, self.seed)


class Overloaded(Exception):
    """The request queue is full."""


class Engine:
    """Owns the model: a bounded queue, one worker that batches jobs, and an atomic model swap."""

    def __init__(self, max_batch_size: int = 16, batch_wait_ms: float = 10.0, max_queue: int = 64):
        self.max_batch_size, self.batch_wait, self.max_queue = max_batch_size, batch_wait_ms / 1000, max_queue
        self.llm = None
        self.version: Optional[str] = None
        self.counter = None  # (tokenizer copy, lock) for counting tokens outside the generation thread
        self.context_length: Optional[int] = None
        self._swap_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")
        self._queue: Optional[asyncio.Queue] = None
        self._pending = 0
        self.batches: list[int] = []  # sizes of the batches run (for tests and the benchmark)

    @property
    def ready(self) -> bool:
        """True once a model is loaded."""
        return self.llm is not None

    def set_llm(self, llm, version: Optional[str] = None) -> None:
        """Serve ``llm`` from the next batch on (the batch in flight finishes with the old one)."""
        tokenizer = getattr(llm, "tokenizer", None)
        counter = (copy.deepcopy(tokenizer), threading.Lock()) if tokenizer is not None else None
        context = llm._max_length() if hasattr(llm, "_max_length") else None
        with self._swap_lock:
            self.llm, self.version, self.counter, self.context_length = llm, version, counter, context

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` for the current model (whitespace words for models without a tokenizer)."""
        counter = self.counter
        if counter is None:
            return len(text.split())
        tokenizer, lock = counter
        with lock:  # a fast tokenizer must not be used from two threads at once
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def token_pieces(self, text: str) -> list[str]:
        """``text`` cut at token boundaries (for streaming); their concatenation is ``text``."""
        counter = self.counter
        if counter is None:
            words = text.split(" ")
            return [w if i == 0 else " " + w for i, w in enumerate(words)] if text else []
        tokenizer, lock = counter
        with lock:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            pieces, previous = [], ""
            for k in range(1, len(ids) + 1):
                decoded = tokenizer.decode(ids[:k])
                if decoded.startswith(previous) and len(decoded) > len(previous) and not decoded.endswith("\ufffd"):
                    pieces.append(decoded[len(previous):])
                    previous = decoded
        if "".join(pieces) != text:  # decoding did not round-trip: send it in one piece
            return [text] if text else []
        return pieces

    def start(self) -> None:
        """Create the queue and the worker task (inside the running event loop)."""
        self._queue = asyncio.Queue()
        asyncio.get_running_loop().create_task(self._worker())

    async def submit(self, prompt: str, **settings: Any) -> str:
        """Queue one prompt and wait for its completion; ``Overloaded`` when the queue is full."""
        if self._pending >= self.max_queue:
            raise Overloaded()
        future = asyncio.get_running_loop().create_future()
        self._pending += 1
        try:
            await self._queue.put(Job(prompt, future=future, **settings))
            return await future
        finally:
            self._pending -= 1

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.batch_wait
            while len(batch) < self.max_batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            groups: dict[tuple, list[Job]] = {}
            for job in batch:
                if not job.future.cancelled():
                    groups.setdefault(job.key(), []).append(job)
            for jobs in groups.values():
                try:
                    texts = await loop.run_in_executor(self._executor, self._generate, jobs)
                except Exception as e:  # noqa: BLE001  (a failing batch must not kill the worker)
                    for job in jobs:
                        if not job.future.done():
                            job.future.set_exception(e)
                    continue
                for job, text in zip(jobs, texts):
                    if not job.future.done():
                        job.future.set_result(text)

    def _generate(self, jobs: list[Job]) -> list[str]:
        first = jobs[0]
        with self._swap_lock:
            llm = self.llm
            self.batches.append(len(jobs))
        return llm.complete([j.prompt for j in jobs], max_new_tokens=first.max_tokens, temperature=first.temperature,
                            top_p=first.top_p, stop=first.stop, seed=first.seed, batch_size=len(jobs),
                            progress=False)

    def shutdown(self) -> None:
        """Stop the generation thread."""
        self._executor.shutdown(wait=False, cancel_futures=True)


# --- the application -----------------------------------------------------------------------------

@dataclass
class ServerConfig:
    """What ``create_app`` serves and how."""

    model_name: str
    load: Callable[[], Any]                 # returns the LLM to serve (called once, in a thread)
    max_batch_size: int = 16
    batch_wait_ms: float = 10.0
    max_queue: int = 64
    log_dir: Optional[Path] = None          # requests.jsonl and feedback.jsonl (redacted); None: no logs
    registry: Optional[Any] = None          # a feedback.AdapterRegistry for hot-swap and rollback
    load_adapter: Optional[Callable[[Path], Any]] = None  # adapter directory -> LLM (with registry)


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def create_app(config: ServerConfig):
    """The FastAPI application; the model loads in a background thread when the app starts."""
    from .feedback import FeedbackStore

    engine = Engine(config.max_batch_size, config.batch_wait_ms, config.max_queue)
    store = FeedbackStore(config.log_dir) if config.log_dir is not None else None
    state: dict[str, Any] = {"load_error": None}

    def load() -> None:
        try:
            if config.registry is not None and config.registry.current() is not None:
                version = config.registry.current()
                engine.set_llm(config.load_adapter(config.registry.path(version)), version)
            else:
                engine.set_llm(config.load(), None)
        except Exception as e:  # noqa: BLE001  (reported by /ready)
            state["load_error"] = f"{type(e).__name__}: {e}"

    @asynccontextmanager
    async def lifespan(app):
        engine.start()
        threading.Thread(target=load, daemon=True, name="load-model").start()
        yield
        engine.shutdown()
        if store is not None:
            store.close()

    app = FastAPI(title="instructlib OpenAI-compatible server", lifespan=lifespan)
    app.state.engine, app.state.store = engine, store

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError):
        headers = {"Retry-After": "1"} if exc.status in (429, 503) else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(404)
    async def not_found(request: Request, exc):
        return JSONResponse(APIError(404, f"Unknown endpoint {request.method} {request.url.path}.",
                                     code="unknown_url").body(), status_code=404)

    @app.exception_handler(405)
    async def bad_method(request: Request, exc):
        return JSONResponse(APIError(405, f"Method {request.method} not allowed on {request.url.path}.",
                                     code="method_not_allowed").body(), status_code=405)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        if engine.ready:
            return {"status": "ready", "model": config.model_name, "adapter": engine.version}
        if state["load_error"]:
            raise APIError(503, f"The model failed to load: {state['load_error']}", type="server_error",
                           code="load_failed")
        raise APIError(503, "The model is still loading.", type="server_error", code="not_ready")

    @app.get("/stats")
    async def stats():
        sizes = list(engine.batches)
        return {"requests": sum(sizes), "batches": len(sizes), "max_batch": max(sizes, default=0),
                "mean_batch": sum(sizes) / len(sizes) if sizes else 0.0, "queued": engine._pending}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": config.model_name, "object": "model", "created": 0,
                                            "owned_by": "instructlib"}]}

    def check_common(req: _Request) -> int:
        if not engine.ready:
            raise APIError(503, "The model is still loading; retry shortly.", type="server_error", code="not_ready")
        if req.model != config.model_name:
            raise APIError(404, f"The model '{req.model}' does not exist; this server serves "
                                f"'{config.model_name}'.", type="invalid_request_error", param="model",
                           code="model_not_found")
        if req.n != 1:
            raise APIError(400, "Only n=1 is supported.", param="n", code="unsupported_value")
        stop = [req.stop] if isinstance(req.stop, str) else (req.stop or [])
        if len(stop) > 4:
            raise APIError(400, "At most 4 stop sequences are allowed.", param="stop", code="invalid_value")
        max_tokens = getattr(req, "max_completion_tokens", None) or req.max_tokens
        max_tokens = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
        limit = engine.context_length
        if max_tokens < 1 or (limit is not None and max_tokens >= limit):
            raise APIError(400, f"max_tokens must be between 1 and {(limit or 2**31) - 1}; got {max_tokens}.",
                           param="max_tokens", code="invalid_value")
        return max_tokens

    def check_length(prompt: str, max_tokens: int, param: str) -> int:
        n = engine.count_tokens(prompt)
        limit = engine.context_length
        if limit is not None and n + max_tokens > limit:
            raise APIError(400, f"This model's maximum context length is {limit} tokens. However, you requested "
                                f"{n + max_tokens} tokens ({n} in the prompt, {max_tokens} for the completion). "
                                "Please reduce the length of the prompt or max_tokens.",
                           param=param, code="context_length_exceeded")
        return n

    async def generate(prompts: list[str], req: _Request, max_tokens: int) -> list[str]:
        stop = tuple([req.stop] if isinstance(req.stop, str) else (req.stop or []))
        settings = dict(max_tokens=max_tokens, temperature=req.temperature, top_p=req.top_p, stop=stop, seed=req.seed)
        try:
            return list(await asyncio.gather(*(engine.submit(p, **settings) for p in prompts)))
        except Overloaded:
            raise APIError(429, "The server is overloaded (request queue full); retry shortly.",
                           type="rate_limit_error", code="queue_full")

    def finish(text: str, max_tokens: int) -> tuple[str, int]:
        n = engine.count_tokens(text)
        return ("length" if n >= max_tokens else "stop"), n

    def log(request_id: str, kind: str, request: dict, outputs: list[str]) -> None:
        if store is not None:
            store.log_request(request_id, kind, config.model_name, engine.version, request, outputs)

    @app.post("/v1/completions")
    async def completions(request: Request):
        req = parse_body(await request.body(), CompletionRequest)
        max_tokens = check_common(req)
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if not prompts or len(prompts) > config.max_queue:
            raise APIError(400, f"prompt must be a string or a list of 1 to {config.max_queue} strings.",
                           param="prompt", code="invalid_value")
        n_prompt = sum(check_length(p, max_tokens, "prompt") for p in prompts)
        texts = await generate(prompts, req, max_tokens)
        rid, created = _new_id("cmpl"), int(time.time())
        await asyncio.to_thread(log, rid, "completion", {"prompt": req.prompt}, texts)
        finished = [finish(t, max_tokens) for t in texts]
        usage = {"prompt_tokens": n_prompt, "completion_tokens": sum(n for _, n in finished),
                 "total_tokens": n_prompt + sum(n for _, n in finished)}
        head = {"id": rid, "created": created, "model": config.model_name}
        if req.stream:
            def events() -> Iterator[str]:
                for i, (text, (reason, _)) in enumerate(zip(texts, finished)):
                    for piece in engine.token_pieces(text):
                        yield _sse({**head, "object": "text_completion", "choices": [
                            {"text": piece, "index": i, "logprobs": None, "finish_reason": None}]})
                    yield _sse({**head, "object": "text_completion", "choices": [
                        {"text": "", "index": i, "logprobs": None, "finish_reason": reason}]})
                if (req.stream_options or {}).get("include_usage"):
                    yield _sse({**head, "object": "text_completion", "choices": [], "usage": usage})
                yield "data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream", headers={"x-request-id": rid})
        return JSONResponse({**head, "object": "text_completion", "choices": [
            {"text": t, "index": i, "logprobs": None, "finish_reason": r} for i, (t, (r, _)) in
            enumerate(zip(texts, finished))], "usage": usage}, headers={"x-request-id": rid})

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        req = parse_body(await request.body(), ChatRequest)
        max_tokens = check_common(req)
        messages = [{"role": m.role, "content": m.content} for m in req.messages]
        prompt = engine.llm.chat_prompt(messages)
        n_prompt = check_length(prompt, max_tokens, "messages")
        [text] = await generate([prompt], req, max_tokens)
        rid, created = _new_id("chatcmpl"), int(time.time())
        await asyncio.to_thread(log, rid, "chat", {"messages": messages}, [text])
        reason, n_out = finish(text, max_tokens)
        usage = {"prompt_tokens": n_prompt, "completion_tokens": n_out, "total_tokens": n_prompt + n_out}
        head = {"id": rid, "created": created, "model": config.model_name}
        if req.stream:
            def events() -> Iterator[str]:
                chunk = {**head, "object": "chat.completion.chunk"}
                yield _sse({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                  "finish_reason": None}]})
                for piece in engine.token_pieces(text):
                    yield _sse({**chunk, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
                yield _sse({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
                if (req.stream_options or {}).get("include_usage"):
                    yield _sse({**chunk, "choices": [], "usage": usage})
                yield "data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream", headers={"x-request-id": rid})
        return JSONResponse({**head, "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": reason}],
            "usage": usage}, headers={"x-request-id": rid})

    @app.post("/v1/feedback")
    async def post_feedback(request: Request):
        if store is None:
            raise APIError(404, "This server keeps no logs, so it takes no feedback (start it with --log-dir).",
                           code="feedback_disabled")
        fb = parse_body(await request.body(), FeedbackRequest)
        if not store.knows(fb.request_id):
            raise APIError(404, f"No request with id '{fb.request_id}' was served here.", param="request_id",
                           code="request_not_found")
        row = await asyncio.to_thread(store.log_feedback, fb.request_id, fb.rating, fb.correction)
        return {"object": "feedback", "id": row["id"], "request_id": fb.request_id, "status": "recorded"}

    def require_registry():
        if config.registry is None or config.load_adapter is None:
            raise APIError(404, "This server has no adapter registry (start it with --adapter-registry).",
                           code="no_registry")
        return config.registry

    @app.get("/v1/adapters")
    async def adapters():
        registry = require_registry()
        return {"object": "list", "active": engine.version, "data": registry.versions()}

    async def switch(version: Optional[str]) -> dict:
        registry = require_registry()
        try:
            llm = await asyncio.to_thread(config.load_adapter, registry.path(version)) if version else \
                await asyncio.to_thread(config.load)
        except (KeyError, FileNotFoundError) as e:
            raise APIError(404, f"Unknown adapter version {version!r}: {e}", param="version", code="unknown_version")
        engine.set_llm(llm, version)  # atomic: the batch in flight finishes on the old model
        return {"object": "adapter", "active": version}

    @app.post("/v1/adapters/activate")
    async def activate(request: Request):
        registry = require_registry()
        try:
            body = json.loads(await request.body())
            version = body["version"]
            if not isinstance(version, str):
                raise TypeError
        except (json.JSONDecodeError, KeyError, TypeError):
            raise APIError(400, "Body must be {\"version\": \"v0001\"}.", param="version", code="invalid_value")
        if version not in registry.versions_list():
            raise APIError(404, f"Unknown adapter version {version!r}.", param="version", code="unknown_version")
        out = await switch(version)
        registry.activate(version)
        return out

    @app.post("/v1/adapters/rollback")
    async def rollback():
        registry = require_registry()
        try:
            version = registry.previous()
        except LookupError as e:
            raise APIError(409, str(e), code="nothing_to_roll_back")
        out = await switch(version)
        registry.rollback()
        return out

    return app


def wait_ready(base_url: str, timeout: float = 180.0, proc=None) -> None:
    """Poll ``/ready`` until it answers 200; raise if ``proc`` (the server process) exits or time runs out."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            detail = proc.stderr.read().decode()[-2000:] if getattr(proc, "stderr", None) else ""
            raise RuntimeError(f"server exited with {proc.returncode}: {detail}")
        try:
            if httpx.get(base_url + "/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{base_url} not ready after {timeout} s")


def serve(config: ServerConfig, host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning") -> None:
    """Run the server with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(config), host=host, port=port, log_level=log_level)
