"""rvs demo: reverse visual search for faces (Photo tab), in videos (Video tab), and 1:1 (Same person?).

    python app.py [--gallery FOLDER] [--port 7860] [--host 127.0.0.1]

Settings (environment): RVS_HUB_REPO / RVS_HUB_REVISION (pull weights + gallery from the Hub),
RVS_INDEX_DIR (a local index), RVS_GALLERY (a photo folder for a starter gallery),
RVS_VIDEO_LIBRARY (a video library to search), GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (Spaces
sets them). See README "App settings".

This file only places components and wires events, one function per tab: the words are in
rvs.app.answers, searching in rvs.app.service, request plumbing (inputs, CPU slots, failures) in
rvs.app.requests, guards in rvs.app.serving.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import os
import re
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd
from gradio.components.plot import AltairPlotData
from gradio.utils import get_upload_folder

from rvs.app.answers import (
    COMPARE_INTRO,
    HEADER,
    LIBRARY_MODES,
    TABLE_HEADERS,
    VIDEO_EXAMPLES,
    VIDEO_MODES,
    Words,
    face_choices,
    hide_paths,
    library_intro,
    no_face_markdown,
    parse_k,
    privacy_note,
    results_csv,
    share_link_markdown,
    share_note,
    shared_expired,
    shared_header,
)
from rvs.app.draw import face_at
from rvs.app.requests import failure, image_source, run_in_worker, video_source
from rvs.app.service import Service
from rvs.app.serving import CpuBudget, ErrorLines, Job, UploadGuard, sweep_leftovers
from rvs.app.startup import load_service
from rvs.config import Config
from rvs.errors import BadInputError, NoFaceError, RvsError

log = logging.getLogger("rvs.app")

W = Words
# Gradio's temporary copies of uploads and results: swept every 5 min, removed once older than 10
# (so gone within 15).
DELETE_CACHE = (300, 600)
PRIVATE = {"api_visibility": "private", "queue": False, "show_progress": "hidden"}
# Image work (detect, search) and video work queue apart, so a long video never holds up image
# searches; the CPU budget caps what computes at once at one thread per core.
IMAGE_JOBS = {"preprocess": False, "concurrency_id": "rvs-image", "concurrency_limit": 2}
VIDEO_JOBS = {"preprocess": False, "concurrency_id": "rvs-video", "concurrency_limit": 1}

CSS = """
.rvs-header h1 { margin-bottom: 0.2em; }
.rvs-small, .rvs-small p { font-size: 0.86em; opacity: 0.85; }
.rvs-status { min-height: 2.5em; }
/* Result tiles: the caption (name · match %) sits under the face and wraps, never cut off; the
   gallery grows with its results instead of scrolling inside a fixed box; 2 columns on a phone. */
#rvs-results .grid-wrap, #rvs-frames .grid-wrap { overflow-y: visible !important; max-height: none !important; height: auto !important; min-height: 0 !important; }
#rvs-results .thumbnail-item, #rvs-frames .thumbnail-item {
  aspect-ratio: auto !important; height: auto !important; display: flex; flex-direction: column; overflow: visible !important; }
#rvs-results .thumbnail-item > img { aspect-ratio: 1 / 1; height: auto !important; }
/* Example photos: small square pictures with their names under them. */
#rvs-examples .grid-wrap { overflow-y: visible !important; max-height: none !important; height: auto !important; min-height: 0 !important; }
#rvs-examples .grid-container { grid-auto-rows: auto !important; grid-template-columns: repeat(4, minmax(0, 1fr)) !important; }
#rvs-examples > label, #rvs-examples .block-label { position: static !important; margin-bottom: 6px; }
#rvs-examples .thumbnail-item { aspect-ratio: auto !important; height: auto !important; display: flex; flex-direction: column; }
#rvs-examples .thumbnail-item > img { aspect-ratio: 1 / 1; height: auto !important; object-fit: cover; }
#rvs-examples .caption-label { position: static !important; max-width: 100% !important; white-space: normal !important; font-size: 0.8em;
  overflow: visible !important; text-overflow: clip !important; overflow-wrap: anywhere; opacity: 1 !important; border: none !important; }
/* Video frames at their own aspect ratio, never letterboxed into a square. */
#rvs-frames .thumbnail-item > img { aspect-ratio: auto !important; height: auto !important; width: 100% !important; object-fit: contain; }
#rvs-results .caption-label, #rvs-frames .caption-label {
  position: static !important; max-width: 100% !important; white-space: normal !important; overflow: visible !important;
  text-overflow: clip !important; overflow-wrap: anywhere; opacity: 1 !important; border: none !important; border-radius: 0 !important; }
/* A gallery's label above its tiles, not over the first two. */
#rvs-results > label, #rvs-frames > label, #rvs-library-hits > label, #rvs-results .block-label, #rvs-frames .block-label,
#rvs-library-hits .block-label { position: static !important; margin-bottom: 6px; }
/* Image labels above the picture, not over its top (where a face's number can be). */
#rvs-faces .block-label, #rvs-faces > label, #rvs-vquery .block-label, #rvs-vquery > label { position: static !important; margin-bottom: 4px; }
/* Pictures' labels above them, not over their top. */
.rvs-labelled .block-label, .rvs-labelled > label { position: static !important; margin-bottom: 4px; }
/* The searched photo: a tap on a face searches it. */
#rvs-faces img { cursor: pointer; }
#rvs-answer-face img { border-radius: 8px; }
/* Controls a thumb can hit: at least 44 px tall. */
button.primary, button.secondary, #rvs-f2f-close { min-height: 44px; }
@media (max-width: 640px) {
  #rvs-results .grid-container { grid-template-columns: repeat(2, minmax(0, 1fr)) !important; }
  #rvs-frames .grid-container { grid-template-columns: repeat(1, minmax(0, 1fr)) !important; }
}
"""

# Moves the player to a time (seconds), pauses it there and brings it into view.
SEEK_JS = "(t) => { const v = document.querySelector('#rvs-video video'); if (v && t !== null && t !== undefined) { v.currentTime = t; v.pause(); v.scrollIntoView({block: 'center'}); } }"
SCROLL_JS = "() => document.querySelector('{sel}')?.scrollIntoView({{behavior: 'instant', block: 'start'}})"
# Each result tile's tooltip (the raw distance, for experts), from the answer's JSON; tiles render
# a moment after the JSON arrives, so this retries briefly.
TOOLTIP_JS = """(data) => { const tips = (data && data.tiles || []).map(t => t.tooltip || '');
  let n = 0; const put = () => { const tiles = document.querySelectorAll('#rvs-results .thumbnail-item');
    tiles.forEach((el, i) => { if (tips[i]) { el.title = tips[i]; } });
    if (tiles.length < tips.length && n++ < 20) setTimeout(put, 150); }; put(); }"""


@dataclass
class Wiring:
    """What every tab's handlers share: the service, the upload guard, the CPU budget, the error lines."""

    service: Service
    guard: UploadGuard
    budget: CpuBudget
    errors: ErrorLines

    @property
    def config(self) -> Config:
        return self.service.config

    def error_line(self, request: gr.Request) -> str:
        # The failed event's message where its answer would be, and it stays (not only a toast).
        line = hide_paths(self.errors.pop(request))
        return f"**{html.escape(line)}**" if line else W.failed


def ready(*inputs: Any) -> Any:
    """A search button works once there is an input (a missing second one gets its line in the
    answer area). Any, not all: two inputs filled at once (an example) answer in either order."""
    return gr.Button(interactive=any(x not in (None, "", {}) for x in inputs))


# ---------------------------------------------------------------------------------------------
# Photo tab


def photo_tab(w: Wiring) -> dict[str, Any]:
    """Upload (or tap an example): the search starts, the photo is shown once with its faces boxed
    (tap one to search it), the answer with the face beside it, then the tiles; a tile opens face
    to face; the result can be shared as a link."""
    cfg, service = w.config, w.service
    labelled = service.labelled_example_images()
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=300):
            query = gr.Image(label=W.photo, sources=["upload", "webcam", "clipboard"], type="filepath", image_mode=None, height=320, elem_id="rvs-query")
            faces_img = gr.Image(label=W.photo_searched, interactive=False, visible=False, format="jpeg", elem_id="rvs-faces")
            with gr.Row():
                search_btn = gr.Button(W.search, variant="primary", interactive=False, elem_id="rvs-search-btn")
                another_btn = gr.Button(W.another_photo, variant="secondary", visible=False, elem_id="rvs-another")
            with gr.Accordion(W.options, open=False):
                # All the values the API takes; after a search the list is that photo's faces.
                face = gr.Dropdown(choices=[*face_choices(20)], value=W.largest, label=W.face, info=W.face_info, allow_custom_value=True)
                k = gr.Slider(1, 50, value=cfg.k, step=1, label=W.k)
            if labelled:
                # Examples as pictures with their names (people would rather look than read); a tap searches one.
                examples = gr.Gallery(
                    value=[(str(p), label) for p, label in labelled], label=W.examples, columns=4, height="auto", object_fit="cover",
                    allow_preview=False, preview=False, format="jpeg", elem_id="rvs-examples", buttons=[],
                )
        with gr.Column(scale=6, min_width=300):
            with gr.Row(equal_height=False, elem_id="rvs-answer"):
                answer_face = gr.Image(show_label=False, interactive=False, visible=False, format="jpeg", height=112, width=112, scale=0, min_width=112, elem_id="rvs-answer-face", buttons=[])
                vote_md = gr.Markdown(W.photo_waiting, elem_id="rvs-vote", elem_classes="rvs-status")
            results = gr.Gallery(
                elem_id="rvs-results", label=W.results, columns=4, height="auto", object_fit="contain", format="jpeg",
                allow_preview=False,  # a click opens the face-to-face view below, not a blurred enlargement
                preview=False, fit_columns=False,
            )
            with gr.Column(visible=False, elem_id="rvs-face-to-face") as f2f:
                f2f_close = gr.Button(W.close, size="sm", elem_id="rvs-f2f-close")
                f2f_md = gr.Markdown(elem_id="rvs-f2f-answer")
                with gr.Row():
                    f2f_query = gr.Image(label=W.your_face, interactive=False, format="jpeg", min_width=160, elem_classes="rvs-labelled")
                    f2f_photo = gr.Image(label=W.gallery_photo, interactive=False, format="jpeg", min_width=160, elem_id="rvs-f2f-photo", elem_classes="rvs-labelled")
                f2f_others = gr.Gallery(label=W.other_photos, columns=6, height="auto", object_fit="contain", allow_preview=False, format="jpeg")
            with gr.Row():
                download = gr.DownloadButton(W.download, value=None, visible=False, size="sm")
                share_btn = gr.Button(W.share, visible=False, size="sm", elem_id="rvs-share-btn")
            share_md = gr.Markdown(share_note(cfg.app_share_days), elem_id="rvs-share", elem_classes="rvs-small", visible=False)
            with gr.Accordion(W.json, open=False):
                result_json = gr.JSON(label=W.json)
    shown = gr.State(None)  # the last answer's face crop and face boxes (server side, per page)
    outputs = [faces_img, results, vote_md, result_json, face, shown]

    def photo_and_k(payload: Any, k_value: Any, missing: str) -> tuple[Any, str, int]:
        # What a search and a share both read from the client: the photo (or `missing`) and k.
        src, name = image_source(payload, w.guard)
        if src is None:
            raise BadInputError(missing)
        return src, name, parse_k(k_value, cfg.k)

    async def search(payload: Any, face_value: Any, k_value: Any, request: gr.Request) -> tuple[Any, ...]:
        try:
            src, name, k_int = photo_and_k(payload, k_value, W.no_photo)
            ans = await run_in_worker(w.budget, lambda: service.search_image(src, face_value, k_int, name=name))
        except NoFaceError as e:
            log.info("user error: %s", e)
            return None, [], no_face_markdown(html.escape(str(e))), {"error": str(e), "results": []}, gr.update(), None
        except Exception as e:
            w.errors.put(request, e)
            raise failure(e) from None
        state = {"crop": ans.face_crop, "boxes": ans.face_boxes}
        return ans.annotated, ans.matches, ans.summary, ans.data, gr.update(choices=ans.face_choices, value=ans.face_value), state

    async def on_upload(payload: Any, k_value: Any, request: gr.Request) -> tuple[Any, ...]:
        if payload is None:  # cleared: back to the start
            return None, [], W.photo_waiting, None, gr.update(choices=face_choices(20), value=W.largest), None
        return await search(payload, W.largest, k_value, request)

    async def on_tap(payload: Any, state: Any, k_value: Any, evt: gr.SelectData, request: gr.Request) -> tuple[Any, ...]:
        xy = tap_point(evt)
        i = face_at(state["boxes"], *xy) if xy is not None and isinstance(state, dict) and state.get("boxes") else None
        if i is None:  # a tap beside every face: nothing changes
            return (*(gr.update(),) * (len(outputs) - 1), state)
        return await search(payload, str(i + 1) if i else W.largest, k_value, request)

    def show(state: Any) -> tuple[Any, ...]:
        # After a search: the photo once (boxed, tappable) instead of the upload box, the face by the answer.
        ok = isinstance(state, dict)
        crop = state.get("crop") if ok else None
        return gr.Image(visible=not ok), gr.Image(visible=ok), gr.Button(visible=ok), gr.Image(value=crop, visible=crop is not None)

    def failed(request: gr.Request) -> tuple[Any, ...]:
        return (None, [], w.error_line(request), {"error": True}, gr.update(), None, *show(None))

    def clear() -> tuple[Any, ...]:
        # A new photo: the old answer (or error) goes, so nothing on the page belongs to another photo.
        return [], W.photo_searching, None, gr.DownloadButton(value=None, visible=False), gr.Column(visible=False), gr.Button(visible=False), gr.Image(value=None, visible=False), None, gr.Markdown(visible=False)

    def closing() -> tuple[Any, ...]:
        # Another search of the same photo: the face-to-face panel and an old share link go.
        return gr.Column(visible=False), gr.Markdown(visible=False)

    def csv_download(data: Any) -> Any:
        path = results_csv(data) if isinstance(data, dict) else None
        return gr.DownloadButton(value=path, visible=path is not None)

    def another() -> tuple[Any, ...]:
        return gr.Image(value=None, visible=True), gr.Image(value=None, visible=False), gr.Button(visible=False)

    shown_parts = [query, faces_img, another_btn, answer_face]
    query.change(clear, None, [results, vote_md, result_json, download, f2f, share_btn, answer_face, shown, share_md], **PRIVATE)
    search_btn.click(closing, None, [f2f, share_md], **PRIVATE)
    faces_img.select(closing, None, [f2f, share_md], **PRIVATE)
    query.change(ready, [query], [search_btn], **PRIVATE)
    searches = [
        query.change(on_upload, [query, k], outputs, api_visibility="private", show_progress="minimal", **IMAGE_JOBS),
        search_btn.click(search, [query, face, k], outputs, api_name="search_image", **IMAGE_JOBS),
        faces_img.select(on_tap, [query, shown, k], outputs, api_visibility="private", **IMAGE_JOBS),
    ]
    # The answer first: once a search ends (the photo's layout settled) its answer is scrolled into
    # view; on a phone it starts below the screen.
    to_answer = {"fn": None, "inputs": None, "outputs": None, "js": SCROLL_JS.format(sel="#rvs-answer")}
    for ev in searches:
        ev.success(show, [shown], shown_parts, **PRIVATE).then(**to_answer)
        ev.then(csv_download, [result_json], [download], **PRIVATE)
        ev.success(lambda data: (gr.Button(visible=bool(isinstance(data, dict) and data.get("tiles"))), gr.Markdown(share_note(cfg.app_share_days), visible=True)), [result_json], [share_btn, share_md], **PRIVATE)
        ev.then(None, [result_json], None, js=TOOLTIP_JS)
        ev.failure(failed, None, outputs + shown_parts, **PRIVATE).then(**to_answer)
    another_btn.click(another, None, [query, faces_img, another_btn], **PRIVATE)
    if labelled:

        def pick_example(evt: gr.SelectData) -> Any:
            # The example's own file (an index into the server's list: a client cannot name a path).
            i = evt.index if isinstance(evt.index, int) else -1
            return gr.Image(value=str(labelled[i][0]), visible=True) if 0 <= i < len(labelled) else gr.update()

        examples.select(pick_example, None, [query], **PRIVATE)

    # The API's face detection alone (no UI control triggers it; the page searches on upload).
    detect_trigger = gr.Button(visible=False)

    async def detect(payload: Any, request: gr.Request) -> tuple[Any, Any]:
        try:
            src, name = image_source(payload, w.guard)
            if src is None:
                return None, gr.update(choices=face_choices(1), value=W.largest)
            annotated, choices = await run_in_worker(w.budget, lambda: service.preview(src, name))
        except Exception as e:
            raise failure(e) from None
        return annotated, gr.update(choices=choices, value=choices[0])

    detect_trigger.click(detect, [query], [faces_img, face], api_name="detect_faces", **IMAGE_JOBS)

    async def on_tile(payload: Any, data: Any, evt: gr.SelectData, request: gr.Request) -> tuple[Any, ...]:
        try:
            tiles = data.get("tiles") if isinstance(data, dict) else None
            i = evt.index if isinstance(evt.index, int) else -1
            if not tiles or not 0 <= i < len(tiles):
                raise BadInputError(W.no_tile)
            src, name = image_source(payload, w.guard)
            if src is None and isinstance(data.get("shared"), str):  # a shared result: its kept face crop
                src, name = service.shared_face(data["shared"]), "shared face"
            if src is None:
                raise BadInputError(W.photo_gone)
            q, photo, md, others = await run_in_worker(w.budget, lambda: service.face_to_face(src, tiles[i], name=name))
        except Exception as e:
            w.errors.put(request, e)
            raise failure(e) from None
        return gr.Column(visible=True), q, photo, md, others

    def tile_failed(request: gr.Request) -> tuple[Any, ...]:
        return gr.Column(visible=True), None, None, w.error_line(request), []

    f2f_parts = [f2f, f2f_query, f2f_photo, f2f_md, f2f_others]
    opened = results.select(on_tile, [query, result_json], f2f_parts, api_visibility="private", **IMAGE_JOBS)
    opened.failure(tile_failed, None, f2f_parts, **PRIVATE)
    # On a phone the comparison is below a long grid: bring it into view.
    opened.success(None, None, None, js=SCROLL_JS.format(sel="#rvs-face-to-face").replace("'instant'", "'smooth'"))
    f2f_close.click(lambda: gr.Column(visible=False), None, [f2f], **PRIVATE)

    async def on_share(payload: Any, face_value: Any, k_value: Any, request: gr.Request) -> Any:
        try:
            src, name, k_int = photo_and_k(payload, k_value, W.nothing_to_share)
            rid = await run_in_worker(w.budget, lambda: service.share(src, face_value, k_int, name=name))
        except Exception as e:
            w.errors.put(request, e)
            raise failure(e) from None
        return gr.Markdown(share_link_markdown(rid, cfg.app_share_days, page_address(request)), visible=True)

    shared = share_btn.click(on_share, [query, face, k], [share_md], api_name="share_result", **IMAGE_JOBS)
    def share_failed(request: gr.Request) -> Any:
        return gr.Markdown(w.error_line(request), visible=True)

    shared.failure(share_failed, None, [share_md], **PRIVATE)
    return {"faces_img": faces_img, "results": results, "vote_md": vote_md, "result_json": result_json}


def tap_point(evt: gr.SelectData) -> tuple[float, float] | None:
    """Where a picture was tapped, in its pixels; None for anything else a client sends."""
    xy = evt.index
    try:
        x, y = float(xy[0]), float(xy[1])  # type: ignore[index]
    except (TypeError, ValueError, IndexError, KeyError):
        return None
    return (x, y) if all(abs(v) < 1e6 for v in (x, y)) else None


def page_address(request: gr.Request | None) -> str:
    """The page's own address (scheme, host, path; no query) from the browser's Referer, for a
    link that can be copied anywhere; "" (a relative link) when absent or odd."""
    ref = request.headers.get("referer", "") if request is not None else ""
    base = ref.split("?", 1)[0].split("#", 1)[0]
    return base if re.fullmatch(r"https?://[A-Za-z0-9.\-_:\[\]]+(/[A-Za-z0-9._~\-/]*)?", base) else ""


def open_shared(demo: gr.Blocks, w: Wiring, photo: dict[str, Any]) -> None:
    """A page opened at ?result=ID shows that shared result (or one line saying it expired)."""
    days = w.config.app_share_days

    def on_open(request: gr.Request) -> tuple[Any, ...]:
        rid = dict(request.query_params).get("result") if request is not None else None
        if not rid:
            return gr.update(), gr.update(), gr.update(), gr.update()
        got = w.service.open_shared(rid)
        if got is None:
            return gr.update(), gr.update(), shared_expired(days), gr.update()
        face_img, tiles, summary, data = got
        return gr.Image(value=face_img, visible=True), tiles, shared_header(summary), data

    demo.load(on_open, None, [photo["faces_img"], photo["results"], photo["vote_md"], photo["result_json"]], api_visibility="private", queue=False)


# ---------------------------------------------------------------------------------------------
# Video tab


def video_tab(w: Wiring) -> None:
    """One video and a query picture: where the picture (frame mode) or its person appears, on the
    player's clock; a tap on a frame or a table row moves the player there."""
    cfg, service = w.config, w.service
    video_examples = _video_examples(service)
    with gr.Row():
        with gr.Column(scale=4):
            video = gr.Video(label=W.video, sources=["upload"], include_audio=True, height=280, elem_id="rvs-video")
            vquery = gr.Image(label=W.video_query, type="filepath", image_mode=None, height=220, elem_id="rvs-vquery")
            mode = gr.Radio(list(VIDEO_MODES.values()), value=VIDEO_MODES["frame"], label=W.find)
            vsearch_btn = gr.Button(W.video_search, variant="primary", interactive=False)
            if video_examples:
                gr.Examples([row[:3] for row in video_examples], inputs=[video, vquery, mode], example_labels=[row[3] for row in video_examples], label=W.video_examples)
        with gr.Column(scale=6):
            vsummary = gr.Markdown(W.video_waiting, elem_id="rvs-vsummary", elem_classes="rvs-status")
            plot = gr.Plot(label=W.plot, show_label=False, elem_id="rvs-plot")
            frames = gr.Gallery(elem_id="rvs-frames", label=W.frames, columns=3, height="auto", object_fit="contain", format="jpeg", preview=False, allow_preview=False, fit_columns=False)
            segments = gr.Dataframe(headers=TABLE_HEADERS, label=W.table, interactive=False, elem_id="rvs-segments")
            seek_to = gr.Number(visible=False)
    with gr.Accordion(W.video_details, open=False):  # the table's details: each moment's segment, reading, scores
        vjson = gr.JSON(label=W.json)
    outputs = [frames, plot, segments, vsummary, vjson]

    async def on_video(vpayload: Any, qpayload: Any, mode_value: Any, request: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        m = "face" if any(word in str(mode_value).lower() for word in ("face", "person")) else "frame"  # label or "face"/"frame"
        progress(0.0, desc=W.reading_video)
        job = Job(cfg.app_video_time_limit_s, "this video search", lambda f, d: progress(f, desc=d))
        try:
            qsrc, qname = image_source(qpayload, w.guard)
            vsrc, vname = video_source(vpayload, w.guard)
            ans = await run_in_worker(
                w.budget,
                lambda: service.search_video(vsrc, qsrc, m, progress=job.progress, query_name=qname, video_name=vname, limits=True),
                job,
            )
        except Exception as e:
            w.errors.put(request, e)
            raise failure(e) from None
        chart = AltairPlotData(chart="line", plot=json.dumps(ans.plot))  # a Vega-Lite spec: the browser draws it
        return ans.frames, chart, pd.DataFrame(ans.rows, columns=ans.headers), ans.summary, ans.data

    def failed(request: gr.Request) -> tuple[Any, ...]:
        return [], None, None, w.error_line(request), {"error": True}

    def seek_time(key: str) -> Any:
        def pick(data: Any, evt: gr.SelectData) -> Any:
            # A table row or a frame tile: its time, for the player. A row is known by its first
            # cell (the table may have been re-sorted), a tile by its place.
            times = data.get(key) if isinstance(data, dict) else None
            i = evt.index[0] if isinstance(evt.index, (list, tuple)) and evt.index else evt.index
            row = getattr(evt, "row_value", None)
            cells = data.get("table_times") if key == "seek_times" and isinstance(data, dict) else None
            if isinstance(row, (list, tuple)) and row and isinstance(cells, list) and row[0] in cells:
                i = cells.index(row[0])
            try:
                t = float(times[i])  # type: ignore[index]
            except (TypeError, ValueError, IndexError, KeyError):
                return gr.update()
            return t if 0.0 <= t < 1e7 else gr.update()

        return pick

    for comp in (video, vquery):
        comp.change(ready, [video, vquery], [vsearch_btn], **PRIVATE)
    vsearch = vsearch_btn.click(on_video, [video, vquery, mode], outputs, api_name="search_video", **VIDEO_JOBS)
    vsearch.failure(failed, None, outputs, **PRIVATE)
    vsearch.then(None, None, None, js=SCROLL_JS.format(sel="#rvs-vsummary"))  # the answer first, on a phone too
    segments.select(seek_time("seek_times"), [vjson], [seek_to], **PRIVATE).then(None, [seek_to], None, js=SEEK_JS)
    frames.select(seek_time("frame_times"), [vjson], [seek_to], **PRIVATE).then(None, [seek_to], None, js=SEEK_JS)
    if service.video_library is not None:
        library_section(w)


def library_section(w: Wiring) -> None:
    """The video library (RVS_VIDEO_LIBRARY or the artifact's): which videos show this person or picture."""
    service, lib = w.service, w.service.video_library
    with gr.Group(elem_id="rvs-library"):
        gr.Markdown(f"### {W.library}\n{library_intro(len(lib.videos), lib.hours)}")
        with gr.Row():
            with gr.Column(scale=4):
                lquery = gr.Image(label=W.library_query, type="filepath", image_mode=None, height=220)
                lmode = gr.Radio(list(LIBRARY_MODES.values()), value=LIBRARY_MODES["person"], label=W.find)
                lsearch_btn = gr.Button(W.library, variant="primary", interactive=False)
            with gr.Column(scale=6):
                lsummary = gr.Markdown(W.library_waiting, elem_id="rvs-lsummary", elem_classes="rvs-status")
                lhits = gr.Gallery(elem_id="rvs-library-hits", label=W.library_hits, columns=3, height="auto", object_fit="contain", format="jpeg", preview=False)
                ljson = gr.JSON(label=W.json, visible=False)

    async def on_library(qpayload: Any, mode_value: Any, request: gr.Request) -> tuple[Any, ...]:
        m = "frame" if str(mode_value) in (LIBRARY_MODES["frame"], "frame") else "person"
        try:
            qsrc, qname = image_source(qpayload, w.guard)
            tiles, summary, data = await run_in_worker(w.budget, lambda: service.search_library(qsrc, m, query_name=qname))
        except Exception as e:
            w.errors.put(request, e)
            raise failure(e) from None
        return tiles, summary, data

    lquery.change(ready, [lquery], [lsearch_btn], **PRIVATE)
    found = lsearch_btn.click(on_library, [lquery, lmode], [lhits, lsummary, ljson], api_name="search_library", **IMAGE_JOBS)
    def failed(request: gr.Request) -> tuple[Any, ...]:
        return [], w.error_line(request), {"error": True}

    found.failure(failed, None, [lhits, lsummary, ljson], **PRIVATE)


# ---------------------------------------------------------------------------------------------
# Same person? tab


def compare_tab(w: Wiring) -> None:
    """Two photos: the calibrated 1:1 answer and the two faces side by side; when a photo has
    several faces, both photos numbered below, and a tap on a face compares that one."""
    gr.Markdown(COMPARE_INTRO)
    with gr.Row():
        photo_a = gr.Image(label=W.photo_1, sources=["upload", "webcam", "clipboard"], type="filepath", image_mode=None, height=260)
        photo_b = gr.Image(label=W.photo_2, sources=["upload", "webcam", "clipboard"], type="filepath", image_mode=None, height=260)
    with gr.Accordion(W.options, open=False):
        with gr.Row():
            # The API's face choice per photo; on the page a tap on the numbered faces sets them.
            face_a = gr.Dropdown(choices=[W.main_face, *[str(i) for i in range(1, 21)]], value=W.main_face, label=W.face_1, allow_custom_value=True)
            face_b = gr.Dropdown(choices=[W.main_face, *[str(i) for i in range(1, 21)]], value=W.main_face, label=W.face_2, allow_custom_value=True)
    compare_btn = gr.Button(W.compare, variant="primary", interactive=False)
    compare_md = gr.Markdown(W.compare_waiting, elem_id="rvs-compare", elem_classes="rvs-status")
    compare_img = gr.Image(label=W.compare_faces, interactive=False, format="jpeg", elem_id="rvs-compare-faces", elem_classes="rvs-labelled")
    pick_img = gr.Image(label=W.compare_pick, interactive=False, visible=False, format="jpeg", elem_id="rvs-compare-pick", elem_classes="rvs-labelled")
    compare_json = gr.JSON(label=W.json, visible=False)
    picked = gr.State(None)  # the faces compared and where every face is on the numbered picture
    outputs = [compare_img, compare_md, compare_json, picked]

    async def compare(pa: Any, pb: Any, fa: Any, fb: Any, request: gr.Request) -> tuple[Any, ...]:
        return await run(pa, pb, (None if fa in (None, "", W.main_face) else fa, None if fb in (None, "", W.main_face) else fb), request)

    async def run(pa: Any, pb: Any, faces: tuple[Any, Any], request: gr.Request | None = None) -> tuple[Any, ...]:
        try:
            (sa, na), (sb, nb) = image_source(pa, w.guard), image_source(pb, w.guard)
            names = (na or "photo 1", nb or "photo 2")
            pair, md, data, picture = await run_in_worker(w.budget, lambda: w.service.compare(sa, sb, faces[0], faces[1], names=names))
        except RvsError as e:  # the answer area says what is wrong, and stays
            log.info("user error: %s", e)
            return None, f"**{html.escape(str(e))}**", {"error": str(e)}, None
        except Exception as e:
            w.errors.put(request, e)
            raise failure(e) from None
        numbers = [f["face"] for f in data.get("faces", [])]
        return pair, md, data, {"picture": picture, "numbers": numbers} if picture is not None else None

    async def on_tap(pa: Any, pb: Any, state: Any, evt: gr.SelectData, request: gr.Request) -> tuple[Any, ...]:
        xy = tap_point(evt)
        if xy is None or not isinstance(state, dict):
            return (*(gr.update(),) * 3, state, gr.update(), gr.update())
        spots = state["picture"][1]
        i = face_at([b for _, _, b in spots], *xy)
        if i is None:
            return (*(gr.update(),) * 3, state, gr.update(), gr.update())
        photo, number, _ = spots[i]
        faces = list(state["numbers"])
        faces[photo] = number
        return (*await run(pa, pb, (faces[0], faces[1]), request), str(faces[0]), str(faces[1]))

    def show(state: Any) -> Any:
        pic = state["picture"][0] if isinstance(state, dict) else None
        return gr.Image(value=pic, visible=pic is not None)

    def new_photo() -> tuple[Any, ...]:
        # Another photo: the old answer and its numbered faces go (a tap must not pick from them).
        return None, W.compare_waiting, None, None, gr.Image(value=None, visible=False), W.main_face, W.main_face

    def failed(request: gr.Request) -> tuple[Any, ...]:
        return None, w.error_line(request), {"error": True}, None

    for comp in (photo_a, photo_b):
        comp.change(ready, [photo_a, photo_b], [compare_btn], **PRIVATE)
        comp.change(new_photo, None, [*outputs, pick_img, face_a, face_b], **PRIVATE)
    done = [
        compare_btn.click(compare, [photo_a, photo_b, face_a, face_b], outputs, api_name="compare", **IMAGE_JOBS),
        pick_img.select(on_tap, [photo_a, photo_b, picked], [*outputs, face_a, face_b], api_visibility="private", **IMAGE_JOBS),
    ]
    for ev in done:
        ev.failure(failed, None, outputs, **PRIVATE)
        ev.then(show, [picked], [pick_img], **PRIVATE)
        ev.then(None, None, None, js=SCROLL_JS.format(sel="#rvs-compare"))


# ---------------------------------------------------------------------------------------------
# The page


def status_markdown(service: Service) -> str:
    return f"{service.status_markdown()}\n"


def build_demo(service: Service) -> gr.Blocks:
    """The Blocks app for `service` (not launched)."""
    with gr.Blocks(title=W.title, delete_cache=DELETE_CACHE, analytics_enabled=False) as demo:
        w = Wiring(service, UploadGuard([get_upload_folder()], example_paths(service)), CpuBudget(service.config.app_cpu_slots or os.cpu_count() or 2), ErrorLines())
        demo.rvs_budget = w.budget  # for tests and the load benchmark
        gr.Markdown(HEADER, elem_classes="rvs-header")
        # What the gallery is, filled when a page loads (the page is built while the gallery may
        # still be loading: built into it, "Preparing" would greet every visitor for a moment).
        status = gr.Markdown("", elem_id="rvs-status", elem_classes="rvs-header")
        # While the gallery is prepared in the background, the header follows it every 2 s.
        timer = gr.Timer(2.0, active=service.loading)
        with gr.Tab(W.tab_photo):
            photo = photo_tab(w)
        with gr.Tab(W.tab_video):
            video_tab(w)
        with gr.Tab(W.tab_compare):
            compare_tab(w)
        with gr.Accordion(W.about, open=False):
            about = gr.Markdown(service.about_markdown())
            people = gr.Dataframe(value=service.gallery_people(), headers=list(W.people_headers), label=W.people, interactive=False, show_search="search", max_height=360)
        gr.Markdown(privacy_note(sum(DELETE_CACHE) // 60), elem_classes="rvs-small")

        def on_tick() -> tuple[Any, ...]:
            return status_markdown(service), gr.Timer(active=service.loading), service.about_markdown(), service.gallery_people()

        timer.tick(on_tick, None, [status, timer, about, people], **PRIVATE)
        demo.load(on_tick, None, [status, timer, about, people], **PRIVATE)
        open_shared(demo, w, photo)
    return demo


def _video_examples(service: Service) -> list[list[Any]]:
    """The bundled sample video with a frame of it (frame mode) and a face from it (person mode)."""
    try:
        pairs = service.video_examples()
    except Exception as e:  # examples are a nicety: never stop the app for them
        log.warning("no video examples: %s", e)
        return []
    return [[str(v), str(q), VIDEO_MODES[m], VIDEO_EXAMPLES[m]] for v, q, m in pairs]


def example_paths(service: Service) -> list[str]:
    """Files the app may serve besides its cache: the example inputs, and nothing else."""
    paths = [*service.example_images(), *(p for row in _video_examples(service) for p in row[:2])]
    return [str(p) for p in paths]


def launch(demo: gr.Blocks, service: Service, host: str, port: int | None, **kw: Any) -> Any:
    """Queue + launch with the app's limits: image and video requests queue apart, 64 waiting,
    uploads capped at Config.max_upload_bytes; torch computes with one thread per request
    (requests x threads never exceed the cores, see rvs.app.serving.CpuBudget)."""
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
