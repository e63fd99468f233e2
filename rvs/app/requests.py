"""What every request of the served app goes through: its inputs read from Gradio's payloads
(only files uploaded to this app, or the app's examples: `UploadGuard`), its work run on a CPU
slot in a worker thread (cancellable), and its failure turned into one line.

Image inputs are handled with `preprocess=False`: the handler gets Gradio's upload record (a
path inside Gradio's upload cache) and rvs.imageio reads it, which checks the pixel count from
the header before decoding and turns a non-image or a corrupt file into a one-line message
(Gradio's own preprocessing would decode any size and fail with a generic error).
"""

from __future__ import annotations

import asyncio
import base64
import html
import logging
from collections.abc import Callable
from typing import Any

import gradio as gr

from rvs.app.answers import hide_paths
from rvs.app.serving import CpuBudget, Job, JobCancelled, UploadGuard, safe_name, trim_memory
from rvs.errors import BadInputError, RvsError

log = logging.getLogger("rvs.app")


def image_source(payload: Any, guard: UploadGuard) -> tuple[str | bytes | None, str]:
    """(what rvs.imageio can read, the user's file name for messages) from a Gradio image payload
    (preprocess=False): a file this client uploaded (checked by `guard`: any other server path is
    refused), or the bytes of a data: URL (webcam / clipboard in some browsers)."""
    if payload is None:
        return None, "image"
    if isinstance(payload, dict):
        name = safe_name(payload.get("orig_name"), "uploaded image")
        url = payload.get("url") or ""
        if isinstance(url, str) and url.startswith("data:"):
            try:
                data = base64.b64decode(url.split(",", 1)[1], validate=False)
            except (ValueError, IndexError):
                raise BadInputError("the pasted image could not be decoded") from None
            return data, name
        return guard.check(payload.get("path")), name
    if isinstance(payload, str):
        return guard.check(payload), "image"
    raise BadInputError("unexpected image payload: send a file uploaded to this app")


def video_source(payload: Any, guard: UploadGuard) -> tuple[str | None, str]:
    """(path of the uploaded video, the user's file name) from a Gradio video payload."""
    if payload is None:
        return None, "video"
    if isinstance(payload, str):
        return guard.check(payload), "video"
    if isinstance(payload, dict):
        inner = payload.get("video") if isinstance(payload.get("video"), dict) else payload
        return guard.check(inner.get("path")), safe_name(inner.get("orig_name"), "video")
    raise BadInputError("unexpected video payload: send a file uploaded to this app")


def failure(e: BaseException) -> gr.Error:
    """Every failure becomes a one-line message (HTML-escaped: it may quote a file name) for the
    page and API clients, and one log line; only a bug is logged with its traceback. The app
    keeps serving (Gradio isolates each request)."""
    if isinstance(e, RvsError):
        log.info("user error: %s: %s", type(e).__name__, str(e).splitlines()[0][:300] if str(e) else "")
        title = "Stopped" if isinstance(e, JobCancelled) else "Cannot search this"
        return gr.Error(html.escape(hide_paths(str(e))), title=title, print_exception=False)
    log.exception("unexpected error in a request")
    return gr.Error(f"unexpected error ({type(e).__name__}); please try another file", title="Error", print_exception=False)


async def run_in_worker(budget: CpuBudget, fn: Callable[[], Any], job: Job | None = None) -> Any:
    """Run `fn` in a worker thread holding one CPU slot. If this request is cancelled (Gradio's
    cancel, the client went away), the job's flag is set and the worker stops at its next
    progress report, freeing its core; the slot is released when the worker really ends."""

    def work() -> Any:
        try:
            with budget.slot(job):
                return fn()
        finally:
            if job is not None:
                trim_memory()

    future = asyncio.get_running_loop().run_in_executor(None, work)
    try:
        return await future
    except asyncio.CancelledError:
        if job is not None:
            job.cancel("cancelled by the client")
        raise
