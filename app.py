"""rvs demo: reverse visual search for faces (image tab) and in videos (video tab).

    python app.py [--gallery FOLDER] [--port 7860] [--host 127.0.0.1]

Settings (environment): RVS_HUB_REPO / RVS_HUB_REVISION (pull weights + gallery from the Hub),
RVS_INDEX_DIR (a local index), RVS_GALLERY (a photo folder for a starter gallery),
GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (Spaces sets them). See README "App settings".

This file only wires the UI: startup, searching and drawing live in rvs.app.service and rvs.app.draw.
Image inputs are handled with `preprocess=False`: the handler gets Gradio's upload record (a
path inside Gradio's upload cache) and rvs.imageio reads it, which checks the pixel count from
the header before decoding and turns a non-image or a corrupt file into a one-line message
(Gradio's own preprocessing would decode any size and fail with a generic error).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import html
import logging
import os
from collections.abc import Callable
from typing import Any

import gradio as gr
import pandas as pd
from gradio.utils import get_upload_folder

from rvs.app.answers import (
    COMPARE_INTRO,
    HEADER,
    LIBRARY_MODES,
    TABLE_HEADERS,
    face_choices,
    library_intro,
    no_face_markdown,
    results_csv,
    share_link_markdown,
    share_note,
    shared_expired,
    shared_header,
)
from rvs.app.service import Service
from rvs.app.serving import CpuBudget, ErrorLines, Job, JobCancelled, UploadGuard, safe_name, sweep_leftovers, trim_memory
from rvs.app.startup import load_service
from rvs.config import Config
from rvs.errors import BadInputError, NoFaceError, RvsError

log = logging.getLogger("rvs.app")

FRAME_MODE = "Frame (find the moment this picture was taken from)"
FACE_MODE = "Person (face)"
# Gradio's temporary copies of uploads and results: swept every 5 min, removed once older than 10
# (so gone within 15).
DELETE_CACHE = (300, 600)

CSS = """
.rvs-header h1 { margin-bottom: 0.2em; }
.rvs-small, .rvs-small p { font-size: 0.86em; opacity: 0.85; }
.rvs-status { min-height: 2.5em; }
/* Result tiles: the caption (name · distance) sits under the face and wraps, never cut off; the
   gallery grows with its results instead of scrolling inside a fixed box; 2 columns on a phone. */
#rvs-results .grid-wrap, #rvs-frames .grid-wrap { overflow-y: visible !important; max-height: none !important; height: auto !important; }
#rvs-results .thumbnail-item, #rvs-frames .thumbnail-item {
  aspect-ratio: auto !important; height: auto !important; display: flex; flex-direction: column; overflow: visible !important; }
#rvs-results .thumbnail-item > img, #rvs-frames .thumbnail-item > img { aspect-ratio: 1 / 1; height: auto !important; }
#rvs-results .caption-label, #rvs-frames .caption-label {
  position: static !important; max-width: 100% !important; white-space: normal !important; overflow: visible !important;
  text-overflow: clip !important; overflow-wrap: anywhere; opacity: 1 !important; border: none !important; border-radius: 0 !important; }
/* A gallery's label above its tiles, not over the first two. */
#rvs-results > label, #rvs-frames > label, #rvs-library-hits > label, #rvs-results .block-label, #rvs-frames .block-label,
#rvs-library-hits .block-label { position: static !important; margin-bottom: 6px; }
/* Controls a thumb can hit: at least 44 px tall. */
button.primary, button.secondary, #rvs-f2f-close { min-height: 44px; }
@media (max-width: 640px) {
  #rvs-results .grid-container { grid-template-columns: repeat(2, minmax(0, 1fr)) !important; }
  #rvs-frames .grid-container { grid-template-columns: repeat(1, minmax(0, 1fr)) !important; }
}
"""


# ---------------------------------------------------------------------------------------------
# Inputs


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


def _fail(e: BaseException) -> gr.Error:
    """Every failure becomes a one-line message (HTML-escaped: it may quote a file name) for the
    page and API clients, and one log line; only a bug is logged with its traceback. The app
    keeps serving (Gradio isolates each request)."""
    if isinstance(e, RvsError):
        log.info("user error: %s: %s", type(e).__name__, str(e).splitlines()[0][:300] if str(e) else "")
        title = "Stopped" if isinstance(e, JobCancelled) else "Cannot search this"
        return gr.Error(html.escape(str(e)), title=title, print_exception=False)
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


# ---------------------------------------------------------------------------------------------
# The UI




def header_markdown(service: Service) -> str:
    return f"{HEADER}\n{service.status_markdown()}\n"


PRIVACY = (
    "**Privacy.** Uploads are processed in memory for your request only: nothing is logged or stored by rvs, "
    "derived video features of uploads are deleted after the search, and Gradio's temporary copies are swept "
    f"within {sum(DELETE_CACHE) // 60} minutes. **Caveat.** The gallery is LFW, a research benchmark of public "
    "figures; a name is given only above a calibrated probability, and look-alikes are similarities, not "
    "identifications. Do not use this to identify private people."
)


def build_demo(service: Service) -> gr.Blocks:
    """The Blocks app for `service` (not launched)."""
    cfg = service.config
    labelled = service.labelled_example_images()
    example_images = [str(p) for p, _ in labelled]
    video_examples = _video_examples(service)

    with gr.Blocks(title="rvs: reverse visual search", delete_cache=DELETE_CACHE, analytics_enabled=False) as demo:
        header = gr.Markdown(header_markdown(service), elem_classes="rvs-header")
        # While the gallery is prepared in the background, the header follows it every 2 s.
        timer = gr.Timer(2.0, active=service.loading)

        with gr.Tab("Photo"):
            with gr.Row():
                with gr.Column(scale=4):
                    query = gr.Image(
                        label="Photo with a face",
                        sources=["upload", "webcam", "clipboard"],
                        type="filepath",
                        image_mode=None,
                        height=320,
                    )
                    with gr.Row():
                        face = gr.Dropdown(
                            # All the values the API takes; after an upload the list is that photo's faces.
                            choices=[*face_choices(20)],
                            value="1 (largest)",
                            label="Face to search",
                            info="numbers as drawn on the photo",
                            allow_custom_value=True,
                            scale=2,
                        )
                        k = gr.Slider(1, 50, value=cfg.k, step=1, label="Results (k)", scale=3)
                    search_btn = gr.Button("Search", variant="primary", interactive=False)
                    if example_images:
                        gr.Examples(
                            example_images,
                            inputs=[query],
                            example_labels=[label for _, label in labelled],
                            label="Examples (click one, then Search)",
                            examples_per_page=12,
                        )
                with gr.Column(scale=5):
                    faces_img = gr.Image(elem_id="rvs-faces", label="Faces found", interactive=False, height=320, format="jpeg")
                    vote_md = gr.Markdown(
                        "Upload a photo and press **Search**.", label="answer", elem_id="rvs-vote", elem_classes="rvs-status"
                    )
            results = gr.Gallery(
                elem_id="rvs-results",
                label="Nearest gallery faces: look-alikes unless named above (match %: same-person probability)",
                columns=5,
                height="auto",
                object_fit="contain",
                format="jpeg",
                allow_preview=False,  # a click opens the face-to-face view below, not a blurred enlargement
                preview=False,
                fit_columns=False,
            )
            with gr.Column(visible=False, elem_id="rvs-face-to-face") as f2f:
                f2f_close = gr.Button("Close", size="sm", elem_id="rvs-f2f-close")
                f2f_md = gr.Markdown(elem_id="rvs-f2f-answer")
                with gr.Row():
                    f2f_query = gr.Image(label="Your photo's face", interactive=False, format="jpeg", min_width=160)
                    f2f_photo = gr.Image(label="The gallery photo", interactive=False, format="jpeg", min_width=160)
                f2f_others = gr.Gallery(label="Their other photos in the gallery", columns=6, height="auto", object_fit="contain", allow_preview=False, format="jpeg")
            with gr.Row():
                download = gr.DownloadButton("Download the results (CSV)", value=None, visible=False, size="sm")
                share_btn = gr.Button("Share this result", visible=False, size="sm", elem_id="rvs-share-btn")
            share_md = gr.Markdown(share_note(cfg.app_share_days), elem_id="rvs-share", elem_classes="rvs-small", visible=False)
            with gr.Accordion("Result as JSON", open=False):
                result_json = gr.JSON(label="search result")

        with gr.Tab("Video"):
            with gr.Row():
                with gr.Column(scale=4):
                    video = gr.Video(label="Video", sources=["upload"], include_audio=True, height=280, elem_id="rvs-video")
                    vquery = gr.Image(label="Query: a frame, a screenshot or a photo of the person", type="filepath", image_mode=None, height=220)
                    mode = gr.Radio([FRAME_MODE, FACE_MODE], value=FRAME_MODE, label="Find")
                    vsearch_btn = gr.Button("Search the video", variant="primary", interactive=False)
                    if video_examples:
                        gr.Examples(
                            [row[:3] for row in video_examples],
                            inputs=[video, vquery, mode],
                            example_labels=[row[3] for row in video_examples],
                            label="Examples: 4 s of people walking (click one, then Search)",
                        )
                with gr.Column(scale=6):
                    vsummary = gr.Markdown(
                        "Upload a video and a query picture.", label="video summary", elem_id="rvs-vsummary", elem_classes="rvs-status"
                    )
                    plot = gr.Image(label="similarity over time", show_label=False, interactive=False, format="png")
                    frames = gr.Gallery(
                        elem_id="rvs-frames",
                        label="Where it appears",
                        columns=3,
                        height="auto",
                        object_fit="contain",
                        format="jpeg",
                        preview=False,
                        fit_columns=False,
                    )
                    segments = gr.Dataframe(headers=TABLE_HEADERS, label="Moments and segments (tap a row: the player goes there)", interactive=False, elem_id="rvs-segments")
                    seek_to = gr.Number(visible=False)
            with gr.Accordion("Result as JSON", open=False):
                vjson = gr.JSON(label="video result")
            lib = service.video_library
            if lib is not None:
                with gr.Group(elem_id="rvs-library"):
                    gr.Markdown(f"### Search the video library\n{library_intro(len(lib.videos), lib.hours)}")
                    with gr.Row():
                        with gr.Column(scale=4):
                            lquery = gr.Image(label="A photo of the person, or a picture", type="filepath", image_mode=None, height=220)
                            lmode = gr.Radio(list(LIBRARY_MODES.values()), value=LIBRARY_MODES["person"], label="Find")
                            lsearch_btn = gr.Button("Search the video library", variant="primary", interactive=False)
                        with gr.Column(scale=6):
                            lsummary = gr.Markdown("Upload a query picture.", elem_id="rvs-lsummary", elem_classes="rvs-status")
                            lhits = gr.Gallery(elem_id="rvs-library-hits", label="Videos it appears in", columns=3, height="auto", object_fit="contain", format="jpeg", preview=False)
                            ljson = gr.JSON(label="library result", visible=False)

        with gr.Tab("Same person?"):
            gr.Markdown(COMPARE_INTRO)
            with gr.Row():
                photo_a = gr.Image(label="Photo 1", sources=["upload", "webcam", "clipboard"], type="filepath", image_mode=None, height=260)
                photo_b = gr.Image(label="Photo 2", sources=["upload", "webcam", "clipboard"], type="filepath", image_mode=None, height=260)
            compare_btn = gr.Button("Compare", variant="primary", interactive=False)
            compare_md = gr.Markdown("Upload two photos.", elem_id="rvs-compare", elem_classes="rvs-status")
            compare_img = gr.Image(label="The two faces compared", interactive=False, format="jpeg", elem_id="rvs-compare-faces")
            compare_json = gr.JSON(label="comparison", visible=False)

        with gr.Accordion("About this gallery", open=False):
            about = gr.Markdown(service.about_markdown(), label="about")
            people = gr.Dataframe(
                value=service.gallery_people(),
                headers=["person", "photos"],
                label="Who is in this gallery (search by name)",
                interactive=False,
                show_search="search",
                max_height=360,
            )
        gr.Markdown(PRIVACY, elem_classes="rvs-small")

        # ---- handlers ----
        guard = UploadGuard([get_upload_folder()], example_paths(service))
        budget = CpuBudget(cfg.app_cpu_slots or os.cpu_count() or 2)
        demo.rvs_budget = budget  # for tests and the load benchmark
        errors = ErrorLines()

        async def on_query_change(payload: Any, request: gr.Request) -> tuple[Any, Any]:
            try:
                src, name = image_source(payload, guard)
                if src is None:
                    return None, gr.update(choices=face_choices(1), value="1 (largest)")
                annotated, choices = await run_in_worker(budget, lambda: service.preview(src, name))
            except Exception as e:
                errors.put(request, e)
                raise _fail(e) from None
            return annotated, gr.update(choices=choices, value=choices[0])

        async def on_search(
            payload: Any, face_value: Any, k_value: Any, request: gr.Request, progress: gr.Progress = gr.Progress()
        ) -> tuple[Any, ...]:
            try:
                src, name = image_source(payload, guard)
                if src is None:
                    raise BadInputError("upload a photo first (or click an example)")
                try:
                    k_int = int(float(k_value)) if k_value not in (None, "") else cfg.k
                except (TypeError, ValueError):
                    raise BadInputError(f"k must be a number of results, not {str(k_value)[:40]!r}") from None
                progress(0.1, desc="detecting and embedding faces")
                ans = await run_in_worker(budget, lambda: service.search_image(src, face_value, k_int, name=name))
            except NoFaceError as e:
                log.info("user error: %s", e)
                msg = no_face_markdown(html.escape(str(e)))
                return None, [], msg, {"error": str(e), "results": []}, gr.update()
            except Exception as e:
                errors.put(request, e)
                raise _fail(e) from None
            return ans.annotated, ans.matches, ans.summary, ans.data, gr.update(choices=ans.face_choices, value=ans.face_value)

        async def on_video(vpayload: Any, qpayload: Any, mode_value: Any, request: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
            m = "face" if any(w in str(mode_value).lower() for w in ("face", "person")) else "frame"  # label or "face"/"frame"
            progress(0.0, desc="reading the video")
            job = Job(cfg.app_video_time_limit_s, "this video search", lambda f, d: progress(f, desc=d))
            try:
                qsrc, qname = image_source(qpayload, guard)
                vsrc, vname = video_source(vpayload, guard)
                ans = await run_in_worker(
                    budget,
                    lambda: service.search_video(vsrc, qsrc, m, progress=job.progress, query_name=qname, video_name=vname, limits=True),
                    job,
                )
            except asyncio.CancelledError:
                log.info("video search cancelled by the client")
                raise
            except Exception as e:
                errors.put(request, e)
                raise _fail(e) from None
            table = pd.DataFrame(ans.rows, columns=ans.headers)
            return ans.frames, ans.plot, table, ans.summary, ans.data

        # Image work (detect, search) and video work queue apart, so a long video never holds up
        # image searches; the CPU budget caps what computes at once at one thread per core.
        img = {"preprocess": False, "concurrency_id": "rvs-image", "concurrency_limit": 2}
        vid = {"preprocess": False, "concurrency_id": "rvs-video", "concurrency_limit": 1}
        def on_tick() -> tuple[Any, ...]:
            return header_markdown(service), gr.Timer(active=service.loading), service.about_markdown(), service.gallery_people()

        timer.tick(on_tick, None, [header, timer, about, people], api_visibility="private", show_progress="hidden", queue=False)
        # Each page load shows the gallery's state now, not the one when the page was built (a
        # gallery ready at start-up must not greet every visitor with "Preparing the gallery").
        demo.load(on_tick, None, [header, timer, about, people], api_visibility="private", show_progress="hidden", queue=False)

        async def on_tile(payload: Any, data: Any, evt: gr.SelectData, request: gr.Request) -> tuple[Any, ...]:
            try:
                tiles = data.get("tiles") if isinstance(data, dict) else None
                i = evt.index if isinstance(evt.index, int) else -1
                if not tiles or not 0 <= i < len(tiles):
                    raise BadInputError("search first, then pick a result tile")
                src, name = image_source(payload, guard)
                if src is None:
                    raise BadInputError("the photo searched is no longer on the page: upload it again")
                q, photo, md, others = await run_in_worker(budget, lambda: service.face_to_face(src, tiles[i], name=name))
            except Exception as e:
                errors.put(request, e)
                raise _fail(e) from None
            return gr.Column(visible=True), q, photo, md, others

        async def on_share(payload: Any, face_value: Any, k_value: Any, request: gr.Request) -> Any:
            try:
                src, name = image_source(payload, guard)
                if src is None:
                    raise BadInputError("upload a photo and search first")
                k_int = int(float(k_value)) if k_value not in (None, "") else cfg.k
                rid = await run_in_worker(budget, lambda: service.share(src, face_value, k_int, name=name))
            except Exception as e:
                errors.put(request, e)
                raise _fail(e) from None
            return gr.Markdown(share_link_markdown(rid, cfg.app_share_days), visible=True)

        def on_open(request: gr.Request) -> tuple[Any, ...]:
            rid = dict(request.query_params).get("result") if request is not None else None
            if not rid:
                return gr.update(), gr.update(), gr.update()
            got = service.open_shared(rid)
            if got is None:
                return gr.update(), gr.update(), shared_expired(cfg.app_share_days)
            face_img, tiles, summary = got
            return face_img, tiles, shared_header(summary)

        def csv_download(data: Any) -> Any:
            path = results_csv(data) if isinstance(data, dict) else None
            return gr.DownloadButton(value=path, visible=path is not None)

        def clear_answer() -> tuple[Any, ...]:
            # A new photo: the old answer (or error) goes, so nothing on the page belongs to another photo.
            return [], "Press **Search**.", None, gr.DownloadButton(value=None, visible=False), gr.Column(visible=False), gr.Button(visible=False)

        query.change(clear_answer, None, [results, vote_md, result_json, download, f2f, share_btn], api_visibility="private", queue=False)

        def ready(*inputs: Any) -> Any:
            # A search button works once there is an input (a missing second one gets its line in the
            # answer area). Any, not all: two inputs filled at once (an example) answer in either order.
            return gr.Button(interactive=any(x not in (None, "", {}) for x in inputs))

        private = {"api_visibility": "private", "queue": False, "show_progress": "hidden"}
        query.change(ready, [query], [search_btn], **private)
        for comp in (video, vquery):
            comp.change(ready, [video, vquery], [vsearch_btn], **private)
        for comp in (photo_a, photo_b):
            comp.change(ready, [photo_a, photo_b], [compare_btn], **private)
        detect = query.change(on_query_change, [query], [faces_img, face], api_name="detect_faces", show_progress="minimal", **img)
        def error_line(request: gr.Request) -> str:
            # The failed search's message where its answer would be, and it stays (not only a toast).
            line = errors.pop(request)
            return f"**{html.escape(line)}**" if line else "Nothing to show: try again."

        def image_failed(request: gr.Request) -> tuple[Any, ...]:
            return None, [], error_line(request), {"error": True}, gr.update()

        def detect_failed(request: gr.Request) -> tuple[Any, ...]:
            return None, gr.update(), error_line(request)

        def video_failed(request: gr.Request) -> tuple[Any, ...]:
            return [], None, None, error_line(request), {"error": True}

        search = search_btn.click(on_search, [query, face, k], [faces_img, results, vote_md, result_json, face], api_name="search_image", **img)
        search.then(csv_download, [result_json], [download], api_visibility="private", queue=False)
        search.success(lambda: (gr.Button(visible=True), gr.Markdown(share_note(cfg.app_share_days), visible=True)), None, [share_btn, share_md], **private)
        share_btn.click(on_share, [query, face, k], [share_md], api_name="share_result", **img)
        demo.load(on_open, None, [faces_img, results, vote_md], api_visibility="private", queue=False)
        # The answer first: once a search ends its answer is scrolled into view (on a phone it
        # starts below the screen).
        search.then(None, None, None, js="() => document.querySelector('#rvs-vote')?.scrollIntoView({behavior: 'instant', block: 'start'})")
        search.failure(image_failed, None, [faces_img, results, vote_md, result_json, face], **private)
        opened = results.select(on_tile, [query, result_json], [f2f, f2f_query, f2f_photo, f2f_md, f2f_others], api_visibility="private", **img)
        # On a phone the comparison is below a long grid: bring it into view.
        opened.success(None, None, None, js="() => document.querySelector('#rvs-face-to-face')?.scrollIntoView({behavior: 'smooth', block: 'start'})")
        f2f_close.click(lambda: gr.Column(visible=False), None, [f2f], **private)
        detect.failure(detect_failed, None, [faces_img, face, vote_md], **private)
        vsearch = vsearch_btn.click(on_video, [video, vquery, mode], [frames, plot, segments, vsummary, vjson], api_name="search_video", **vid)
        vsearch.failure(video_failed, None, [frames, plot, segments, vsummary, vjson], **private)

        def on_row(data: Any, evt: gr.SelectData) -> Any:
            # A table row (a moment or a segment): its time, for the player below.
            times = data.get("seek_times") if isinstance(data, dict) else None
            row = evt.index[0] if isinstance(evt.index, (list, tuple)) and evt.index else evt.index
            if not times or not isinstance(row, int) or not 0 <= row < len(times):
                return gr.update()
            return float(times[row])

        seek = segments.select(on_row, [vjson], [seek_to], **private)
        seek.then(None, [seek_to], None, js="(t) => { const v = document.querySelector('#rvs-video video'); if (v && t !== null) { v.currentTime = t; v.pause(); v.scrollIntoView({block: 'center'}); } }")
        async def on_compare(pa: Any, pb: Any) -> tuple[Any, ...]:
            try:
                (sa, na), (sb, nb) = image_source(pa, guard), image_source(pb, guard)
                pair, md, data = await run_in_worker(budget, lambda: service.compare(sa, sb, names=(na or "photo 1", nb or "photo 2")))
            except RvsError as e:  # the answer area says what is wrong, and stays
                log.info("user error: %s", e)
                return None, f"**{html.escape(str(e))}**", {"error": str(e)}
            except Exception as e:
                raise _fail(e) from None
            return pair, md, data

        compare_btn.click(on_compare, [photo_a, photo_b], [compare_img, compare_md, compare_json], api_name="compare", **img)
        if lib is not None:

            async def on_library(qpayload: Any, mode_value: Any) -> tuple[Any, ...]:
                m = "frame" if str(mode_value) in (LIBRARY_MODES["frame"], "frame") else "person"
                try:
                    qsrc, qname = image_source(qpayload, guard)
                    tiles, summary, data = await run_in_worker(budget, lambda: service.search_library(qsrc, m, query_name=qname))
                except Exception as e:
                    raise _fail(e) from None
                return tiles, summary, data

            lquery.change(ready, [lquery], [lsearch_btn], **private)
            lsearch_btn.click(on_library, [lquery, lmode], [lhits, lsummary, ljson], api_name="search_library", **img)
    return demo


def _video_examples(service: Service) -> list[list[Any]]:
    """The bundled sample video with a frame of it (frame mode) and a face from it (person mode)."""
    try:
        pairs = service.video_examples()
    except Exception as e:  # examples are a nicety: never stop the app for them
        log.warning("no video examples: %s", e)
        return []
    labels = {"frame": "Find this frame of the video (a still at 2.00 s)", "face": "Find this person (a face seen at 1.00 s)"}
    return [[str(v), str(q), FACE_MODE if m == "face" else FRAME_MODE, labels[m]] for v, q, m in pairs]


def example_paths(service: Service) -> list[str]:
    """Files the app may serve besides its cache: the example inputs, and nothing else."""
    paths = [*service.example_images(), *(p for row in _video_examples(service) for p in row[:2])]
    return [str(p) for p in paths]


def launch(demo: gr.Blocks, service: Service, host: str, port: int | None, **kw: Any) -> Any:
    """Queue + launch with the app's limits: image and video requests queue apart (see
    build_demo), 64 waiting, uploads capped at Config.max_upload_bytes; torch computes with one
    thread per request (requests x threads never exceed the cores, see rvs.app.serving.CpuBudget)."""
    import torch

    torch.set_num_threads(1)
    demo.queue(default_concurrency_limit=2, max_size=64)
    return demo.launch(
        server_name=host,
        server_port=port,
        max_file_size=service.config.max_upload_bytes,
        allowed_paths=example_paths(service),
        theme=gr.themes.Soft(primary_hue="indigo", secondary_hue="blue"),
        css=CSS,
        show_error=True,
        footer_links=["api"],
        **kw,
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="rvs demo (Gradio)")
    p.add_argument("--gallery", help="photo folder for a starter gallery (folder per person, like LFW); default RVS_GALLERY")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), help="0.0.0.0 to listen on all interfaces")
    p.add_argument("--share", action="store_true", help="also serve on a temporary public gradio.live link (Gradio's share tunnel)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP request otherwise
    cfg = Config.from_env()
    swept = sweep_leftovers(cfg.cache_dir, get_upload_folder(), older_than_s=sum(DELETE_CACHE))
    if swept:
        log.info("removed %d leftovers of earlier runs (temporary caches, old uploads)", swept)
    # Listen at once: the page says what is being prepared while the gallery downloads, loads or
    # builds in the background, and video frame search works meanwhile.
    service = Service.preparing(cfg, args.gallery)
    service.prepare_in_background(lambda: load_service(cfg, gallery=args.gallery, resolved=service.artifacts))
    launch(build_demo(service), service, args.host, args.port, share=args.share)


if __name__ == "__main__":
    main()
