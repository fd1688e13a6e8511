"""Chapter 10: an OpenAI-compatible HTTP server over the course's ``LLM`` interface, with dynamic batching.

Endpoints: ``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions`` (both with
``"stream": true`` as server-sent events), ``POST /v1/feedback`` (see ``feedback.py``), ``GET /health``
(the process is up), ``GET /ready`` (the model is loaded: 200, else 503), ``GET /stats`` (batch
sizes so far), and, when an adapter
registry is configured, ``GET /v1/adapters``, ``POST /v1/adapters/activate``, ``POST /v1/adapters/rollback``.

**Dynamic batching.** Every request becomes a job in one bounded queue, served by one generation
thread. For transformers causal LMs the batching is **iteration-level** (continuous): every step
admits whatever is waiting (up to ``max_batch_size`` sequences running) and runs one forward pass
that prefills the newcomers *and* decodes the next token of every running sequence
(``models.llm.ContinuousBatcher``: the sequences packed into one row, a mask keeping them apart); a
sequence that ends leaves at once. So a request never waits for a batch in flight to finish, a long
answer never holds short ones back, and chat and completion requests with different settings share
steps. Other models run in static batches through ``llm.complete``. On a CPU a pass over 8
sequences costs little more than a pass over one, which is where the throughput comes from.
``batch_wait_ms`` (default 0) makes an idle engine wait for company before it starts.

**Overload.** The queue holds at most ``max_queue`` jobs; one more gets ``429`` at once instead of an
unbounded wait. Before the model is loaded, generation endpoints answer ``503`` and ``/v1/models``
lists no model (what clients used to vLLM and Ollama expect).

**Streaming.** With iteration-level batching each step's new text goes to its client at once as a
server-sent event (text that could still become a stop string is held back until it cannot), so the
first token arrives after one prefill, not after the whole answer. Static batches stream the
finished text piece by piece. ``finish_reason`` is ``"stop"`` (end of text or a stop string) or
``"length"`` (``max_tokens`` reached), as the model reports it.

**Errors** are OpenAI-shaped: ``{"error": {"message", "type", "param", "code"}}`` with 400 for
malformed JSON, missing or mistyped fields, too-long prompts and impossible ``max_tokens``, 404 for
an unknown model or request id; the server keeps serving.

FastAPI + uvicorn (with httptools and uvloop): pydantic validation, an asyncio event loop for many
waiting connections, and ``StreamingResponse`` for SSE, all well kept and already what the Python
serving ecosystem uses.
"""
from __future__ import annotations

import asyncio
import copy
from contextlib import asynccontextmanager
import json
import queue
import threading
import time
import uuid
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
    ignore_eos: bool = False  # vLLM's extension: generate max_tokens tokens (benchmarks of fixed answer length)


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

@dataclass(eq=False)
class Job:
    """One prompt waiting to be generated; its events (text pieces, then the finish) go to ``events``."""

    prompt: str
    max_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: Optional[int]
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue
    ids: Optional[list[int]] = None     # the prompt's token ids when the handler already tokenized it
    ignore_eos: bool = False
    cancelled: bool = False
    on_done: Optional[Callable[[], None]] = None  # called on the event loop once the job is over
    released: bool = False
    enqueued: float = field(default_factory=time.perf_counter)
    stream: bool = True                 # False: the handler wants only the whole text, sent once at the end
    held: list[str] = field(default_factory=list)  # pieces kept back while not streaming

    def key(self) -> tuple:
        """Jobs with equal keys can share one static ``llm.complete`` call."""
        return (self.max_tokens, self.temperature, self.top_p, self.stop, self.seed)

    def emit(self, item) -> None:
        """Hand an event to the request's handler (called from the generation thread)."""
        final = isinstance(item, BaseException) or item[1] is not None
        if not final and not self.stream:  # one wake-up of the event loop per request, not one per piece
            self.held.append(item[0])
            return
        if self.held and not isinstance(item, BaseException):
            item, self.held = ("".join(self.held) + item[0], *item[1:]), []
        if final and not self.released:  # deliver and free the queue place in one hand-over
            self.released = True
            self._call(self._finish, item)
        elif not final:
            self._call(self.events.put_nowait, item)

    def _finish(self, item) -> None:
        self.events.put_nowait(item)
        if self.on_done is not None:
            self.on_done()

    def _call(self, fn, *args) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the event loop is gone (shutdown)
            pass

    def release(self) -> None:
        """The job is over (finished, failed or dropped): free its place in the queue (generation thread)."""
        if not self.released:
            self.released = True
            if self.on_done is not None:
                self._call(self.on_done)


class Overloaded(Exception):
    """The request queue is full."""


def _continuous(llm) -> bool:
    """True when ``llm`` can be decoded step by step (``models.llm.supports_continuous_batching``)."""
    from ..models.llm import supports_continuous_batching

    return supports_continuous_batching(llm)


class Engine:
    """Owns the model: a bounded queue, one generation thread, and an atomic model swap.

    Transformers causal LMs are served with **iteration-level batching** (``models.llm.ContinuousBatcher``):
    every decode step admits whatever requests are waiting (up to ``max_batch_size`` running), a
    finished request leaves at once, and text is sent to its client as it is generated. Other models
    (scripted test models, encoder-decoders, TinyGPT outside transformers) are served in **static
    batches**: the jobs waiting together go through one ``llm.complete`` call.

    ``batch_wait_ms``: when the engine is idle and a request arrives, how long to wait for company
    before starting. With iteration-level batching a later request joins at the next step anyway, so
    the default is 0 (``benchmarks/serve.py --sweep`` measures the trade-off).
    """

    def __init__(self, max_batch_size: int = 16, batch_wait_ms: float = 0.0, max_queue: int = 64):
        self.max_batch_size, self.batch_wait, self.max_queue = max_batch_size, batch_wait_ms / 1000, max_queue
        self.llm = None
        self.version: Optional[str] = None
        self.counter = None  # (tokenizer copy, lock) for counting tokens outside the generation thread
        self.context_length: Optional[int] = None
        self._swap_lock = threading.Lock()
        self._inbox: "queue.SimpleQueue[Job]" = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()
        self._pending = 0
        self.batches: list[int] = []  # rows per forward pass (continuous) or per llm.complete call (static)
        self.requests = 0             # jobs admitted to generation

    @property
    def ready(self) -> bool:
        """True once a model is loaded."""
        return self.llm is not None

    def set_llm(self, llm, version: Optional[str] = None) -> None:
        """Serve ``llm`` to requests admitted from now on (running ones finish on the old one)."""
        tokenizer = getattr(llm, "tokenizer", None)
        counter = (copy.deepcopy(tokenizer), threading.Lock()) if tokenizer is not None else None
        context = llm._max_length() if hasattr(llm, "_max_length") else None
        with self._swap_lock:
            self.llm, self.version, self.counter, self.context_length = llm, version, counter, context

    def encode(self, text: str) -> Optional[list[int]]:
        """Token ids of ``text`` for the current model (None for models without a tokenizer)."""
        counter = self.counter
        if counter is None:
            return None
        tokenizer, lock = counter
        with lock:  # a fast tokenizer must not be used from two threads at once
            backend = getattr(tokenizer, "backend_tokenizer", None)  # the Rust tokenizer: same ids, less Python
            if backend is not None:
                return backend.encode(text, add_special_tokens=False).ids
            return tokenizer(text, add_special_tokens=False)["input_ids"]

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` for the current model (whitespace words for models without a tokenizer)."""
        ids = self.encode(text)
        return len(text.split()) if ids is None else len(ids)

    def token_pieces(self, text: str) -> list[str]:
        """``text`` cut at token boundaries (for streaming a finished text); their concatenation is ``text``."""
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
        """Start the generation thread (call inside the running event loop)."""
        self._thread = threading.Thread(target=self._run, daemon=True, name="generate")
        self._thread.start()

    def enqueue(self, prompt: str, ids: Optional[list[int]] = None, **settings: Any) -> Job:
        """Queue one prompt; ``Overloaded`` at once when ``max_queue`` requests are pending."""
        if self._pending >= self.max_queue:
            raise Overloaded()
        self._pending += 1
        job = Job(prompt, loop=asyncio.get_running_loop(), events=asyncio.Queue(), ids=ids, on_done=self._done,
                  **settings)
        self._inbox.put(job)
        return job

    async def events(self, job: Job):
        """Yield ``(piece, finish_reason_or_None, n_tokens)`` for ``job`` until it finishes."""
        finished = False
        try:
            while True:
                item = await job.events.get()
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                yield item
                if item[1] is not None:
                    finished = True
                    return
        finally:
            if not finished:
                job.cancelled = True  # the client went away: the generation thread drops it

    def _done(self) -> None:
        self._pending -= 1

    async def generate(self, prompt: str, ids: Optional[list[int]] = None, **settings: Any) -> tuple[str, str, int]:
        """(text, finish reason, completion tokens) of one prompt."""
        job = self.enqueue(prompt, ids, **settings)
        pieces, reason, n = [], "stop", 0
        async for piece, reason_, n in self.events(job):
            pieces.append(piece)
            reason = reason_ or reason
        return "".join(pieces), reason, n

    async def submit(self, prompt: str, **settings: Any) -> str:
        """Queue one prompt and wait for its completion text; ``Overloaded`` when the queue is full."""
        return (await self.generate(prompt, **settings))[0]

    # -- the generation thread --------------------------------------------------------------------

    def _take(self, first: Optional[Job], room: int) -> list[Job]:
        """``first`` (if any) plus whatever waits in the inbox, up to ``room`` jobs; waits only when idle."""
        jobs = [first] if first is not None else []
        deadline = time.monotonic() + (self.batch_wait if first is not None else 0.0)
        while len(jobs) < room:
            try:
                jobs.append(self._inbox.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                jobs.append(self._inbox.get(timeout=remaining))
            except queue.Empty:
                break
        for job in jobs:
            if job.cancelled:
                job.release()
        return [j for j in jobs if not j.cancelled]

    def _run(self) -> None:
        from ..models.llm import ContinuousBatcher

        batcher, running, held = None, {}, []
        while not self._stopping.is_set():
            busy = batcher is not None and len(batcher) > 0
            if not busy and not held:
                try:
                    first = self._inbox.get(timeout=0.2)
                except queue.Empty:
                    continue
                jobs = self._take(first, self.max_batch_size)
            else:
                jobs = held + self._take(None, self.max_batch_size - len(running) - len(held))
                held = []
            with self._swap_lock:
                llm = self.llm
            if not _continuous(llm) and not busy:
                self._static(llm, jobs)
                continue
            if batcher is None or batcher.llm is not llm:
                if busy:  # a new model: the old one finishes its running sequences first
                    held = jobs
                    jobs = []
                else:
                    batcher = ContinuousBatcher(llm)
            for job in jobs:
                try:
                    batcher.add(job, job.ids if job.ids else job.prompt, max_new_tokens=job.max_tokens,
                                temperature=job.temperature, top_p=job.top_p, stop=job.stop, seed=job.seed,
                                ignore_eos=job.ignore_eos)
                    running[id(job)] = job
                    self.requests += 1
                except Exception as e:  # noqa: BLE001  (a bad job fails alone)
                    job.emit(e)
            for job in [j for j in running.values() if j.cancelled]:
                batcher.cancel(job)
                del running[id(job)]
                job.release()
            if not len(batcher):
                continue
            done = len(batcher.forward_sizes)
            try:
                news = batcher.step()
            except Exception as e:  # noqa: BLE001  (a failing step fails its jobs, not the server)
                for job in running.values():
                    job.emit(e)
                batcher, running = None, {}
                continue
            self.batches.extend(batcher.forward_sizes[done:])
            for job, piece, reason, n in news:
                job.emit((piece, reason, n))
                if reason is not None:
                    running.pop(id(job), None)

    def _static(self, llm, jobs: list[Job]) -> None:
        groups: dict[tuple, list[Job]] = {}
        for job in jobs:
            groups.setdefault(job.key(), []).append(job)
        for group in groups.values():
            first = group[0]
            self.batches.append(len(group))
            self.requests += len(group)
            try:
                results = llm.complete([j.prompt for j in group], max_new_tokens=first.max_tokens,
                                       temperature=first.temperature, top_p=first.top_p, stop=first.stop,
                                       seed=first.seed, batch_size=len(group), progress=False, return_finish=True)
            except Exception as e:  # noqa: BLE001  (a failing batch must not kill the worker)
                for job in group:
                    job.emit(e)
                continue
            for job, (text, reason) in zip(group, results):
                pieces = self.token_pieces(text) or [""]
                for piece in pieces[:-1]:
                    job.emit((piece, None, 0))
                job.emit((pieces[-1], reason, self.count_tokens(text)))

    def shutdown(self) -> None:
        """Stop the generation thread."""
        self._stopping.set()


# --- the application -----------------------------------------------------------------------------

@dataclass
class ServerConfig:
    """What ``create_app`` serves and how."""

    model_name: str
    load: Callable[[], Any]                 # returns the LLM to serve (called once, in a thread)
    max_batch_size: int = 16
    batch_wait_ms: float = 0.0
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
        # batches: forward passes (iteration-level) or llm.complete calls (static); rows: sequences in them
        return {"requests": engine.requests, "batches": len(sizes), "rows": sum(sizes), "max_batch": max(sizes, default=0),
                "mean_batch": sum(sizes) / len(sizes) if sizes else 0.0, "queued": engine._pending}

    @app.get("/v1/models")
    async def models():
        """The served model, listed only once it is ready (as ``/ready``); an empty ``data`` list while loading."""
        if not engine.ready:
            return {"object": "list", "data": []}
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
        if req.ignore_eos and not _continuous(engine.llm):
            raise APIError(400, "ignore_eos needs a model served with iteration-level batching.",
                           param="ignore_eos", code="unsupported_value")
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

    def check_length(prompt: str, max_tokens: int, param: str) -> tuple[int, Optional[list[int]]]:
        """(prompt tokens, prompt ids) — tokenized once, here, and handed to the generation thread."""
        ids = engine.encode(prompt)
        n = len(prompt.split()) if ids is None else len(ids)
        limit = engine.context_length
        if limit is not None and n + max_tokens > limit:
            raise APIError(400, f"This model's maximum context length is {limit} tokens. However, you requested "
                                f"{n + max_tokens} tokens ({n} in the prompt, {max_tokens} for the completion). "
                                "Please reduce the length of the prompt or max_tokens.",
                           param=param, code="context_length_exceeded")
        return n, ids

    def enqueue(prompts: list[tuple[str, Optional[list[int]]]], req: _Request, max_tokens: int) -> list[Job]:
        stop = tuple([req.stop] if isinstance(req.stop, str) else (req.stop or []))
        settings = dict(max_tokens=max_tokens, temperature=req.temperature, top_p=req.top_p, stop=stop, seed=req.seed,
                        ignore_eos=req.ignore_eos, stream=bool(req.stream))
        if engine._pending + len(prompts) > engine.max_queue:
            raise APIError(429, "The server is overloaded (request queue full); retry shortly.",
                           type="rate_limit_error", code="queue_full")
        try:
            return [engine.enqueue(p, ids, **settings) for p, ids in prompts]
        except Overloaded:
            raise APIError(429, "The server is overloaded (request queue full); retry shortly.",
                           type="rate_limit_error", code="queue_full")

    async def collect(job: Job) -> tuple[str, str, int]:
        pieces, reason, n = [], "stop", 0
        async for piece, reason_, n in engine.events(job):
            pieces.append(piece)
            reason = reason_ or reason
        return "".join(pieces), reason, n

    async def merged(jobs: list[Job]):
        """(index, piece, finish reason, n tokens) of several jobs, in the order the pieces are generated."""
        if len(jobs) == 1:
            async for piece, reason, n in engine.events(jobs[0]):
                yield 0, piece, reason, n
            return
        out: asyncio.Queue = asyncio.Queue()

        async def pump(i, job):
            try:
                async for piece, reason, n in engine.events(job):
                    await out.put((i, piece, reason, n))
            except BaseException as e:  # noqa: BLE001  (handed to the consumer)
                await out.put(e)

        tasks = [asyncio.create_task(pump(i, job)) for i, job in enumerate(jobs)]
        try:
            left = len(jobs)
            while left:
                item = await out.get()
                if isinstance(item, BaseException):
                    raise item
                if item[2] is not None:
                    left -= 1
                yield item
        finally:
            for t in tasks:
                t.cancel()

    async def write_log(request_id: str, kind: str, request: dict, outputs: list[str]) -> None:
        """Append the request to the log (in a worker thread: the write is fsync'ed); no-op without a log."""
        if store is not None:
            await asyncio.to_thread(store.log_request, request_id, kind, config.model_name, engine.version,
                                    request, outputs)

    def usage_of(n_prompt: int, n_out: int) -> dict:
        return {"prompt_tokens": n_prompt, "completion_tokens": n_out, "total_tokens": n_prompt + n_out}

    @app.post("/v1/completions")
    async def completions(request: Request):
        req = parse_body(await request.body(), CompletionRequest)
        max_tokens = check_common(req)
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if not prompts or len(prompts) > config.max_queue:
            raise APIError(400, f"prompt must be a string or a list of 1 to {config.max_queue} strings.",
                           param="prompt", code="invalid_value")
        checked = [check_length(p, max_tokens, "prompt") for p in prompts]
        n_prompt = sum(n for n, _ in checked)
        jobs = enqueue([(p, ids) for p, (_, ids) in zip(prompts, checked)], req, max_tokens)
        rid, created = _new_id("cmpl"), int(time.time())
        head = {"id": rid, "created": created, "model": config.model_name, "object": "text_completion"}
        if req.stream:  # pieces go out as the model produces them
            async def events():
                texts, total = [""] * len(jobs), 0
                async for i, piece, reason, n in merged(jobs):
                    texts[i] += piece
                    if piece:
                        yield _sse({**head, "choices": [{"text": piece, "index": i, "logprobs": None,
                                                         "finish_reason": None}]})
                    if reason is not None:
                        total += n
                        yield _sse({**head, "choices": [{"text": "", "index": i, "logprobs": None,
                                                         "finish_reason": reason}]})
                if (req.stream_options or {}).get("include_usage"):
                    yield _sse({**head, "choices": [], "usage": usage_of(n_prompt, total)})
                yield "data: [DONE]\n\n"
                await write_log(rid, "completion", {"prompt": req.prompt}, texts)
            return StreamingResponse(events(), media_type="text/event-stream", headers={"x-request-id": rid})
        results = await asyncio.gather(*(collect(j) for j in jobs))
        await write_log(rid, "completion", {"prompt": req.prompt}, [t for t, _, _ in results])
        return JSONResponse({**head, "choices": [
            {"text": t, "index": i, "logprobs": None, "finish_reason": r} for i, (t, r, _) in enumerate(results)],
            "usage": usage_of(n_prompt, sum(n for _, _, n in results))}, headers={"x-request-id": rid})

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        req = parse_body(await request.body(), ChatRequest)
        max_tokens = check_common(req)
        messages = [{"role": m.role, "content": m.content} for m in req.messages]
        prompt = engine.llm.chat_prompt(messages)
        n_prompt, ids = check_length(prompt, max_tokens, "messages")
        [job] = enqueue([(prompt, ids)], req, max_tokens)
        rid, created = _new_id("chatcmpl"), int(time.time())
        head = {"id": rid, "created": created, "model": config.model_name}
        if req.stream:  # pieces go out as the model produces them
            async def events():
                chunk, text = {**head, "object": "chat.completion.chunk"}, ""
                yield _sse({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                  "finish_reason": None}]})
                async for piece, reason, n in engine.events(job):
                    text += piece
                    if piece:
                        yield _sse({**chunk, "choices": [{"index": 0, "delta": {"content": piece},
                                                          "finish_reason": None}]})
                    if reason is not None:
                        yield _sse({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
                        if (req.stream_options or {}).get("include_usage"):
                            yield _sse({**chunk, "choices": [], "usage": usage_of(n_prompt, n)})
                yield "data: [DONE]\n\n"
                await write_log(rid, "chat", {"messages": messages}, [text])
            return StreamingResponse(events(), media_type="text/event-stream", headers={"x-request-id": rid})
        text, reason, n_out = await collect(job)
        await write_log(rid, "chat", {"messages": messages}, [text])
        return JSONResponse({**head, "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": reason}],
            "usage": usage_of(n_prompt, n_out)}, headers={"x-request-id": rid})

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


def wait_ready(base_url: str, timeout: float = 180.0, proc=None, path: str = "/ready") -> None:
    """Poll ``path`` (``/ready``; ``/health``: up, model maybe still loading) until it answers 200; raise if
    ``proc`` (the server process) exits or time runs out."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            detail = proc.stderr.read().decode()[-2000:] if getattr(proc, "stderr", None) else ""
            raise RuntimeError(f"server exited with {proc.returncode}: {detail}")
        try:
            if httpx.get(base_url + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{base_url}{path} not 200 after {timeout} s")


def serve(config: ServerConfig, host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning") -> None:
    """Run the server with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(config), host=host, port=port, log_level=log_level)
