"""An OpenAI-compatible LLM server with FastAPI + Hugging Face transformers: one generate() call at a time.

Routes (the same on both sides): GET /v1/models, POST /v1/chat/completions, POST /v1/completions (streaming
too), with OpenAI-style error bodies. Run it, leave it up (Ctrl-C stops it) and talk to it from a second
terminal with vllm_examples/openai_client.py (vllm_examples/README.md). With --smoke-test (or
--load-requests) it runs the client's API check (good and bad requests) and a short load test against
itself, writes result.json and exits (workshop/self_test.py).

Diff it with its twin to see the Ray changes (the numbered comments are explained in vllm_examples/README.md):

    diff -u vllm_examples/baseline/openai_server.py vllm_examples/ray_version/openai_server.py
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Optional

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, StoppingCriteria
from transformers.generation.streamers import BaseStreamer

from workshop import cli, llm_workload, models, self_test, serve_client
from workshop.text_api import BodySizeLimit

MAX_BODY_BYTES = 2**20  # far more than --max-model-len tokens of text; a larger body gets 413 before it is read


# ---- the OpenAI request subset the client uses (extra fields are ignored, as OpenAI's API does) ----
class ChatMessage(BaseModel):
    role: str  # any role the chat template renders, as vLLM accepts ("system", "user", "assistant", ...)
    content: str


class StreamOptions(BaseModel):
    include_usage: bool = False


class SamplingFields(BaseModel):
    model: str
    max_tokens: Optional[int] = Field(None, ge=1)
    min_tokens: int = Field(0, ge=0)  # a vLLM extension: suppress end-of-sequence until this many tokens
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: Optional[int] = None
    stream: bool = False
    stream_options: Optional[StreamOptions] = None


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)


class CompletionRequest(SamplingFields):
    prompt: str
    max_tokens: Optional[int] = Field(16, ge=1)  # OpenAI's default for /v1/completions


class APIError(Exception):
    """An error the client sees as an OpenAI-style body: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, param: Optional[str] = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


def error_body(status: int, message: str, param: Optional[str] = None) -> dict:
    kind = {400: "BadRequestError", 404: "NotFoundError", 413: "BadRequestError"}.get(status, "InternalServerError")
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


def error_response(status: int, message: str, param: Optional[str] = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=error_body(status, message, param))


class TokenQueue(BaseStreamer):
    """generate() (in its own thread) hands each new token to put(); the response reads them from an asyncio
    queue on the event loop, so a stream that waits for its turn holds no thread of the server's pool."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.tokens: asyncio.Queue = asyncio.Queue()
        self.prompt_skipped = False
        self.cancelled = threading.Event()  # set when the client has gone: generate() stops at the next token

    def send(self, item) -> None:  # thread-safe: called from the generate() thread
        self.loop.call_soon_threadsafe(self.tokens.put_nowait, item)

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_skipped:  # the first call carries the prompt
            self.prompt_skipped = True
            return
        self.send(value.reshape(-1).tolist())

    def end(self) -> None:
        self.send(None)


class StopWhenCancelled(StoppingCriteria):
    """Ends generate() once the client of a stream has disconnected, so no work is spent on an answer nobody reads."""

    def __init__(self, cancelled: threading.Event) -> None:
        self.cancelled = cancelled

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.cancelled.is_set(), dtype=torch.bool, device=input_ids.device)


class Generator:
    """The model in this process. generate() calls run one at a time: a second request waits for the first."""

    def __init__(self, model_name: str, args) -> None:
        self.model_id = models.display_name(model_name)
        self.max_model_len = args.max_model_len
        self.device = "cuda" if args.use_gpu else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(model_name)
        self.model = AutoModelForCausalLM.from_pretrained(model_name, dtype=args.dtype)
        self.model.to(self.device).eval()
        self.lock = threading.Lock()

    def encode(self, request: SamplingFields, text: str) -> tuple[list[int], int]:
        """Prompt token ids and the number of tokens to generate; 400 when they do not fit the context."""
        ids = self.tokenizer(text)["input_ids"]
        room = self.max_model_len - len(ids)
        max_tokens = request.max_tokens or room
        if max_tokens > room or room < 1:
            raise APIError(400, f"This model's maximum context length is {self.max_model_len} tokens. "
                                f"However, you requested {max_tokens} output tokens and your prompt contains "
                                f"{len(ids)} input tokens, for a total of {len(ids) + max_tokens} tokens.",
                           "max_tokens")
        if request.min_tokens > max_tokens:
            raise APIError(400, f"min_tokens ({request.min_tokens}) must not exceed max_tokens "
                                f"({max_tokens})", "min_tokens")
        return ids, max_tokens

    def generate(self, ids: list[int], max_tokens: int, request: SamplingFields,
                 streamer: Optional[TokenQueue] = None) -> list[int]:
        greedy = request.temperature == 0.0
        config = GenerationConfig(
            do_sample=not greedy, temperature=None if greedy else request.temperature,
            top_p=None if greedy else request.top_p, max_new_tokens=max_tokens,
            min_new_tokens=request.min_tokens,
            eos_token_id=self.model.generation_config.eos_token_id, pad_token_id=self.tokenizer.pad_token_id,
        )
        inputs = torch.tensor([ids], device=self.device)
        with self.lock, torch.inference_mode():  # one generate() at a time on the one model
            if request.seed is not None:
                torch.manual_seed(request.seed)
            stop = [StopWhenCancelled(streamer.cancelled)] if streamer is not None else None
            output = self.model.generate(inputs, attention_mask=torch.ones_like(inputs),
                                         generation_config=config, streamer=streamer, stopping_criteria=stop)
        return output[0, len(ids):].tolist()

    def finish_reason(self, new_ids: list[int], max_tokens: int) -> str:
        return "length" if len(new_ids) >= max_tokens else "stop"

    def decode(self, new_ids: list[int]) -> str:
        return self.tokenizer.decode(new_ids, skip_special_tokens=True)


def event(data: dict) -> str:
    """One server-sent event."""
    return f"data: {json.dumps(data)}\n\n"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def build_app(model_name: str, args) -> FastAPI:
    """The FastAPI app: the OpenAI routes, errors and streaming, written out by hand around one Generator."""
    app = FastAPI(title="OpenAI-compatible LLM server (transformers)")
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES, hint="shorten the prompt",
                       error_body=lambda message: error_body(413, message))
    generator = Generator(model_name, args)

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.param)

    @app.exception_handler(RequestValidationError)  # OpenAI answers 400, not FastAPI's 422, for a bad body
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"msg": "invalid request", "loc": ["body"]}
        where = ".".join(str(part) for part in first.get("loc", ["body"])[1:]) or "body"
        return error_response(400, f"Invalid request: {first.get('msg')} at {where}", where)

    def check_model(name: str) -> None:
        if name != generator.model_id:
            raise APIError(404, f"The model `{name}` does not exist.", "model")

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": generator.model_id, "object": "model",
                                            "created": int(time.time()), "owned_by": "workshop"}]}

    async def respond(request: SamplingFields, text: str, kind: str):
        check_model(request.model)
        ids, max_tokens = generator.encode(request, text)
        reply_id, created = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}", int(time.time())
        head = {"id": reply_id, "created": created, "model": generator.model_id}
        if not request.stream:
            # in a worker thread, so the event loop keeps answering (e.g. /v1/models) during generation
            new_ids = await run_in_threadpool(generator.generate, ids, max_tokens, request)
            reason, content = generator.finish_reason(new_ids, max_tokens), generator.decode(new_ids)
            if kind == "chat":
                message = {"role": "assistant", "content": content}
                choice = {"index": 0, "message": message, "finish_reason": reason}
            else:
                choice = {"index": 0, "text": content, "finish_reason": reason, "logprobs": None}
            return {**head, "object": "chat.completion" if kind == "chat" else "text_completion",
                    "choices": [choice], "usage": usage(len(ids), len(new_ids))}
        events = stream_events(request, ids, max_tokens, kind, head)
        return StreamingResponse(events, media_type="text/event-stream")

    async def stream_events(request, ids, max_tokens, kind, head):
        """Server-sent events: one chunk per new piece of text, then the finish reason, usage and [DONE]."""
        streamer = TokenQueue(asyncio.get_running_loop())

        def generate_into_queue() -> None:
            try:
                generator.generate(ids, max_tokens, request, streamer)
            except Exception as exc:  # noqa: BLE001  the stream must end, with the error, not wait forever
                streamer.send(exc)

        threading.Thread(target=generate_into_queue, daemon=True).start()
        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"

        def chunk(piece: str, reason: Optional[str] = None) -> str:
            if kind == "chat":
                choice = {"index": 0, "delta": {"content": piece} if piece else {}, "finish_reason": reason}
            else:
                choice = {"index": 0, "text": piece, "finish_reason": reason, "logprobs": None}
            return event({**head, "object": obj, "choices": [choice]})

        try:
            new_ids: list[int] = []
            sent = ""
            while (tokens := await streamer.tokens.get()) is not None:
                if isinstance(tokens, Exception):  # generate() failed mid-stream: an error event, then the end
                    yield event({"error": {"message": f"generation failed: {type(tokens).__name__}: {tokens}",
                                           "type": "InternalServerError", "param": None, "code": 500}})
                    yield "data: [DONE]\n\n"
                    return
                if kind == "chat" and not new_ids:  # with the first token, as vLLM does
                    first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                    yield event({**head, "object": obj, "choices": [first]})
                new_ids += tokens
                text = generator.decode(new_ids)
                if text.endswith("\ufffd"):  # an incomplete UTF-8 character: wait for the next token
                    continue
                if len(text) > len(sent):
                    yield chunk(text[len(sent):])
                    sent = text
            yield chunk("", generator.finish_reason(new_ids, max_tokens))
            if request.stream_options and request.stream_options.include_usage:
                yield event({**head, "object": obj, "choices": [], "usage": usage(len(ids), len(new_ids))})
            yield "data: [DONE]\n\n"
        finally:  # also when the client disconnects (the response is cancelled)
            streamer.cancelled.set()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: ChatCompletionRequest):
        messages = [m.model_dump() for m in request.messages]
        text = generator.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return await respond(request, text, "chat")

    @app.post("/v1/completions")
    async def completions(request: CompletionRequest):
        return await respond(request, request.prompt, "completion")

    return app


def start_server(port: int, model_name: str, args) -> uvicorn.Server:
    """Load the model and serve it on 127.0.0.1:port, in a thread, until stop_server()."""
    server = uvicorn.Server(uvicorn.Config(build_app(model_name, args), host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, name="uvicorn").start()
    return server


def stop_server(server: uvicorn.Server) -> None:
    server.should_exit = True  # uvicorn finishes the requests in flight, then its thread ends


def main() -> None:
    parser = cli.make_parser(__doc__, __file__)
    parser.add_argument("--port", type=cli.positive_int, default=None,
                        help="port on 127.0.0.1 (default 8000; with --smoke-test a free port)")
    parser.add_argument("--model", default=None, help=llm_workload.MODEL_HELP)
    parser.add_argument("--dtype", choices=llm_workload.DTYPES, default="float32", help="weights and compute dtype")
    parser.add_argument("--max-model-len", type=cli.positive_int, default=2048,
                        help="longest prompt + completion accepted (at most the model's context)")
    parser.add_argument("--use-gpu", action="store_true", help="run on the first CUDA GPU")
    parser.add_argument("--load-requests", type=cli.positive_int, default=None,
                        help="self-test: send this many requests, report, shut down (benchmark mode)")
    parser.add_argument("--concurrency", type=cli.positive_int, default=16, help="self-test load concurrency")
    parser.add_argument("--max-tokens", type=cli.positive_int, default=64, help="self-test tokens per answer")
    args = parser.parse_args()
    llm_workload.apply_smoke_defaults(parser, args, load_requests=8, concurrency=4, max_tokens=8,
                                      max_model_len=256)
    if args.use_gpu and not torch.cuda.is_available():
        cli.fail("--use-gpu: PyTorch sees no CUDA GPU here; leave out --use-gpu to run on the CPU")
    port = args.port or (serve_client.free_port() if args.load_requests else 8000)
    if serve_client.port_in_use(port):
        cli.fail(f"port {port} is already in use on 127.0.0.1; stop the program using it or pass --port")
    base_url = f"http://127.0.0.1:{port}/v1"
    client = llm_workload.client_command(base_url, args)  # the self-test's client, found before the server starts
    model_name = models.resolve_llm(args.model)  # the packaged SmolLM2 folder, or a checked --model
    llm_workload.check_context(model_name, args.max_model_len)
    cli.prepare_output(args.output)

    print(f"Loading {models.display_name(model_name)} ...", flush=True)
    try:
        server = start_server(port, model_name, args)
    except (OSError, ValueError) as exc:  # e.g. weights that do not match the config
        cli.fail(f"cannot load model {model_name}: {str(exc).strip().splitlines()[0][:300]}")
    try:
        report = self_test.serve(args, base_url, llm_workload.ready_request(base_url, model_name), client)
    finally:
        stop_server(server)
    if report:
        llm_workload.write_self_test_result(args, report, model_name)


if __name__ == "__main__":
    main()
