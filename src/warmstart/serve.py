"""HTTP server for one artifact: ``warmstart serve ARTIFACT`` (FastAPI + uvicorn).

Endpoints:

- ``GET /health``: ``{"status": "ok"}`` once the model is loaded.
- ``GET /info``: labels, technique, backbone, the artifact's test metrics and the server's limits.
- ``POST /predict``: text artifacts take JSON ``{"texts": ["...", ...]}``; image artifacts take a multipart
  upload with one or more ``files``. The answer has one entry per input: the label, its probability and every
  class's probability (for multi-label models, the labels over the threshold).

Concurrent requests are batched: a request's rows join a queue, and one worker thread runs the model on up to
``max_batch_rows`` queued rows at a time, so many small requests cost about as much as one large one.

Limits, each answered with a 4xx naming the limit: request body bytes (413), inputs per request and text length
(422, also stated in the OpenAPI schema), image pixels (413) and unreadable images (400). The artifact is read
through ``load_artifact``, which checks every file's hash and loads only JSON and safetensors, so an artifact
cannot run code in the server.
"""

import asyncio
import io
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SERVER_MAX_IMAGE_PIXELS = 4096 * 4096


def default_image_pixels() -> int:
    """The server's pixel limit unless ``--max-image-pixels`` sets one: 4096 x 4096, or the lower
    ``WARMSTART_MAX_IMAGE_PIXELS`` that fit and predict use, so that one setting lowers it everywhere."""
    from .data.image import max_image_pixels

    return min(SERVER_MAX_IMAGE_PIXELS, max_image_pixels())


@dataclass
class Limits:
    max_body_bytes: int = 2_000_000
    max_inputs: int = 64
    max_text_chars: int = 10_000
    max_image_pixels: int = field(default_factory=default_image_pixels)
    max_batch_rows: int = 64
    batch_wait_ms: float = 2.0


class _BodyLimit:
    """ASGI middleware: refuse a request body over ``limit`` bytes with 413, whether or not it declares its size."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await _plain_error(send, 413, f"request body over the limit of {self.limit} bytes")
        if declared is not None:
            return await self.app(scope, receive, send)
        # no declared size (chunked): read the body up to the limit first, then replay it to the app
        messages, seen = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > self.limit:
                return await _plain_error(send, 413, f"request body over the limit of {self.limit} bytes")
            if not message.get("more_body", False):
                break

        async def replay() -> dict:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _plain_error(send: Any, status: int, detail: str) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Batcher:
    """Collects rows from concurrent requests and runs ``predict_proba`` on them together in one thread."""

    def __init__(self, predict_proba: Any, max_rows: int, wait_s: float, chunk: int = 16) -> None:
        self.predict_proba, self.max_rows, self.wait_s, self.chunk = predict_proba, max_rows, wait_s, chunk
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None
        self.batches = 0
        self.rows = 0
        self.seconds = 0.0
        self.lock = threading.Lock()

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()

    async def submit(self, inputs: list) -> np.ndarray:
        assert self.queue is not None
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((inputs, fut))
        return await fut

    async def _run(self) -> None:
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            rows = len(items[0][0])
            deadline = loop.time() + self.wait_s
            while rows < self.max_rows:
                timeout = deadline - loop.time()
                try:
                    item = (
                        self.queue.get_nowait()
                        if timeout <= 0
                        else await asyncio.wait_for(self.queue.get(), timeout)
                    )
                except (asyncio.TimeoutError, asyncio.QueueEmpty):
                    break
                items.append(item)
                rows += len(item[0])
            inputs = [x for it, _ in items for x in it]
            try:
                proba = await loop.run_in_executor(None, self._predict, inputs)
            except Exception as e:  # every waiting request learns of it; the loop keeps serving
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            start = 0
            for it, fut in items:
                if not fut.done():
                    fut.set_result(proba[start : start + len(it)])
                start += len(it)

    def _predict(self, inputs: list) -> np.ndarray:
        with self.lock:
            start = time.perf_counter()
            try:
                if len(inputs) <= self.chunk or not isinstance(inputs[0], str):
                    return self.predict_proba(inputs)
                # texts from many requests: in chunks of similar length, so a short question is not padded to
                # the longest text of the whole queue
                order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
                parts = [order[i : i + self.chunk] for i in range(0, len(order), self.chunk)]
                out = None
                for part in parts:
                    proba = self.predict_proba([inputs[i] for i in part])
                    if out is None:
                        out = np.empty((len(inputs), proba.shape[1]), dtype=proba.dtype)
                    out[part] = proba
                return out
            finally:
                self.batches += 1
                self.rows += len(inputs)
                self.seconds += time.perf_counter() - start


@dataclass
class _Served:
    """What the server answers from: the loaded model and what it says about itself."""

    folder: Path
    model: Any
    modality: str
    classes: list[str]
    multilabel: bool
    runtime: dict
    test_metrics: dict

    @classmethod
    def load(cls, folder: Path, device: str) -> "_Served":
        from .artifact import load_artifact

        model = load_artifact(folder, device=device)
        if "progress" in model.get_params():
            model.set_params(progress=False)
        test_metrics: dict = {}
        if (folder / "metrics.json").is_file():
            import json

            m = json.loads((folder / "metrics.json").read_text())
            test_metrics = {k: m[k] for k in ("accuracy", "macro_f1", "n") if k in m}
        return cls(
            folder,
            model,
            model.backbone_.modality,
            [str(c) for c in model.classes_],
            bool(getattr(model, "multilabel_", False)),
            _runtime_of(model),
            test_metrics,
        )

    def answer(self, proba: np.ndarray, seconds: float) -> dict:
        """The /predict response for these probabilities."""
        out = []
        threshold = float(getattr(self.model, "threshold", 0.5))
        for row in proba:
            best = int(row.argmax())
            label: Any = (
                [c for c, p in zip(self.classes, row, strict=True) if p >= threshold]
                if self.multilabel
                else self.classes[best]
            )
            out.append(
                {
                    "label": label,
                    "confidence": round(float(row[best]), 6),
                    "probabilities": {c: round(float(p), 6) for c, p in zip(self.classes, row, strict=True)},
                }
            )
        return {"predictions": out, "model_seconds": round(seconds, 4)}


def create_app(artifact: str | Path, limits: Limits | None = None, device: str = "auto") -> Any:
    """The FastAPI application serving ``artifact`` (loaded and hash-checked now) on ``device``."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI
    from pydantic import BaseModel, Field

    from .data.inputs import as_dataset

    limits = limits or Limits()
    served = _Served.load(Path(artifact), device)

    def proba_of(inputs: Any) -> np.ndarray:
        return served.model.predict_proba(as_dataset(inputs, modality=served.modality))

    batcher = Batcher(proba_of, limits.max_batch_rows, limits.batch_wait_ms / 1000)

    class Prediction(BaseModel):
        label: str | list[str] = Field(
            description="the most probable class (multi-label: every class over threshold)"
        )
        confidence: float = Field(description="probability of the most probable class")
        probabilities: dict[str, float]

    class PredictResponse(BaseModel):
        predictions: list[Prediction]
        model_seconds: float

    async def lifespan(app: Any):
        await batcher.start()
        yield
        await batcher.stop()

    model = served.model
    app = FastAPI(
        title="warmstart model server",
        version=str(__import__("warmstart").__version__),
        description=f"Serves {served.folder.name}: {model.name} on {model.backbone_.name} ({served.modality}).",
        lifespan=asynccontextmanager(lifespan),
    )
    app.add_middleware(_BodyLimit, limit=limits.max_body_bytes)
    _short_validation_errors(app)
    _info_routes(app, served, limits, batcher)
    add_predict = _text_predict if served.modality == "text" else _image_predict
    add_predict(app, served, limits, batcher, PredictResponse, _errors_doc())
    return app


def _short_validation_errors(app: Any) -> None:
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Any, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes each bad input back, and fails (500) on bytes that are not UTF-8; the
        # location and the reason are what a client needs
        errors = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)


def _errors_doc() -> dict[int | str, dict[str, Any]]:
    """The error responses /predict documents in its OpenAPI schema."""
    from pydantic import BaseModel

    class ErrorResponse(BaseModel):
        detail: str | list[dict[str, Any]]

    return {
        400: {
            "model": ErrorResponse,
            "description": "the body could not be parsed, or an image is unreadable",
        },
        413: {"model": ErrorResponse, "description": "the body or an image is over its limit"},
        422: {"model": ErrorResponse, "description": "the request does not match the schema or a limit"},
    }


def _info_routes(app: Any, served: _Served, limits: Limits, batcher: Batcher) -> None:
    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/info")
    async def info() -> dict:
        return {
            "artifact": served.folder.name,
            "technique": served.model.name,
            "modality": served.modality,
            "labels": served.classes,
            "multilabel": served.multilabel,
            "backbone": served.model.backbone_.reference(),
            "test_metrics": served.test_metrics,
            "runtime": served.runtime,
            "limits": asdict(limits),
            "batching": {
                "batches": batcher.batches,
                "rows": batcher.rows,
                "model_seconds": round(batcher.seconds, 3),
            },
        }


def _text_predict(
    app: Any, served: _Served, limits: Limits, batcher: Batcher, response: Any, errors: dict
) -> None:
    from typing import Annotated

    from fastapi import HTTPException
    from pydantic import Field, create_model

    TextRequest = create_model(
        "TextRequest",
        texts=(
            list[Annotated[str, Field(max_length=limits.max_text_chars)]],
            Field(
                min_length=1,
                max_length=limits.max_inputs,
                description=f"1 to {limits.max_inputs} texts of at most {limits.max_text_chars} characters",
            ),
        ),
    )

    @app.post("/predict", response_model=response, responses=errors)
    async def predict_text(request: TextRequest) -> dict:  # type: ignore[valid-type]
        texts = request.texts  # type: ignore[attr-defined]
        for i, t in enumerate(texts):
            try:
                t.encode("utf-8")
            except UnicodeEncodeError as e:
                raise HTTPException(
                    422,
                    f"texts[{i}] has an unpaired surrogate at character {e.start}; send valid UTF-8 text.",
                ) from e
        start = time.perf_counter()
        proba = await batcher.submit(list(texts))
        return served.answer(proba, time.perf_counter() - start)


def _image_predict(
    app: Any, served: _Served, limits: Limits, batcher: Batcher, response: Any, errors: dict
) -> None:
    from typing import Annotated

    from fastapi import File, HTTPException, UploadFile

    @app.post("/predict", response_model=response, responses=errors)
    async def predict_images(
        files: Annotated[list[UploadFile], File(description="one or more image files")],
    ) -> dict:
        if len(files) > limits.max_inputs:
            raise HTTPException(422, f"{len(files)} images in one request; the limit is {limits.max_inputs}.")
        images = [
            decode_image(await f.read(), f.filename or f"files[{i}]", limits) for i, f in enumerate(files)
        ]
        start = time.perf_counter()
        proba = await batcher.submit(images)
        return served.answer(proba, time.perf_counter() - start)


def decode_image(data: bytes, name: str, limits: Limits) -> np.ndarray:
    """An uploaded file to (H, W, 3) uint8, refusing unreadable files and too many pixels before decoding."""
    from fastapi import HTTPException
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w * h > limits.max_image_pixels:
                raise HTTPException(
                    413, f"{name}: {w}x{h} = {w * h} pixels; the limit is {limits.max_image_pixels} pixels."
                )
            im.load()
            from .data.image import to_rgb8

            return to_rgb8(im)  # 16-bit and float images scaled, not clipped
    except HTTPException:
        raise
    except Image.DecompressionBombError as e:
        raise HTTPException(
            413, f"{name}: too many pixels ({e}); the limit is {limits.max_image_pixels}."
        ) from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise HTTPException(
            400, f"{name}: not a readable image ({type(e).__name__}); send PNG or JPEG."
        ) from e


def _runtime_of(model: Any) -> dict:
    """Where the served model computes (its device and precision, resolved), with the backbone put there now
    rather than on the first request."""
    from .runtime import runtime_of

    ran_on = runtime_of(model)
    model.backbone_.to(ran_on["device"])
    return ran_on


def serve(
    artifact: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: Limits | None = None,
    device: str = "auto",
    threads: int | None = None,
) -> None:
    """Serve ``artifact`` until interrupted. ``threads`` sets torch's CPU threads (default: torch's own)."""
    import torch
    import uvicorn

    if threads is not None:
        if threads < 1:
            from .errors import ParameterError

            raise ParameterError(f"--threads must be at least 1; got {threads}.")
        torch.set_num_threads(threads)
    uvicorn.run(create_app(artifact, limits, device), host=host, port=port, log_level="warning")
