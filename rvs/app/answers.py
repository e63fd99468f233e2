"""What the demo shows, built from search results with no UI framework code: the face picker's
options, a searched face's identification (a calibrated name, or "not in this gallery" with
look-alikes), video answers (frames, similarity plot, table) and the CSV download.
"""

from __future__ import annotations

import csv
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rvs.app.chart import similarity_chart
from rvs.app.draw import draw_faces, fit, format_time
from rvs.errors import BadInputError
from rvs.gallery.identify import format_probability
from rvs.video.results import VideoResult

MAX_VIDEO_FRAMES_SHOWN = 12


@dataclass
class ImageAnswer:
    """An image search, ready to display.

    annotated: the query with every face boxed and numbered (searched faces highlighted).
    face_choices / face_value: the face picker's options ("1 (largest)", "2", ..., "all") and value.
    matches: (thumbnail, caption) of the nearest gallery faces, e.g. "Colin Powell · 0.532".
    summary: markdown: who each face is (or "not in this gallery") and timings. data: the SearchResult as a dict (API users).
    """

    annotated: Image.Image
    face_choices: list[str]
    face_value: str
    matches: list[tuple[Image.Image, str]]
    summary: str
    data: dict
    face_boxes: list[list[float]] = field(default_factory=list)  # each face's box on `annotated` (pixels): a tap's target
    face_crop: Image.Image | None = None  # the searched face, shown beside the answer


TABLE_HEADERS = ["time", "reading", "score"]  # a video answer's table: three columns fit a phone


@dataclass
class VideoAnswer:
    """A video search, ready to display: frames (image, "00:02.04 · score 0.99"), similarity over
    time (a Vega-Lite spec, rvs.app.chart), one table row per segment, a markdown summary and the
    result as a dict (its "frame_times": where each frame shown is, for the player)."""

    frames: list[tuple[Image.Image, str]]
    plot: dict
    rows: list[list[Any]]
    summary: str
    data: dict
    headers: list[str] = field(default_factory=lambda: list(TABLE_HEADERS))


# ---------------------------------------------------------------------------------------------
# The page's words (app.py only places them)


class Words:
    """Every label, hint and placeholder the page shows."""

    tab_photo, tab_video, tab_compare = "Photo", "Video", "Same person?"
    photo = "Photo with a face"
    photo_searched = "Your photo: tap a face to search it"
    face = "Face to search"
    face_info = "numbers as drawn on the photo"
    k = "Results (k)"
    options = "Options"
    search = "Search again"
    another_photo = "Use another photo"
    examples = "Examples (tap one: the search starts)"
    photo_waiting = "Upload a photo, or click an example: the search starts by itself."
    photo_searching = "Searching ..."
    results = "Nearest gallery faces: look-alikes unless named above (tap one to compare face to face)"
    close = "Close"
    your_face = "Your photo's face"
    gallery_photo = "The gallery photo"
    other_photos = "Their other photos in the gallery"
    download = "Download the results (CSV)"
    share = "Share this result"
    json = "Result as JSON"
    video_details = "Details of every moment and segment (JSON)"
    video = "Video"
    video_query = "Query: a frame, a screenshot or a photo of the person"
    find = "Find"
    video_search = "Search the video"
    video_waiting = "Upload a video and a query picture."
    video_examples = "Examples: 4 s of people walking (click one, then Search)"
    frames = "Where it appears (tap one: the player goes there)"
    table = "Moments and segments (tap a row: the player goes there)"
    plot = "Similarity over time"
    library = "Search the video library"
    library_query = "A photo of the person, or a picture"
    library_waiting = "Upload a query picture."
    library_hits = "Videos it appears in"
    photo_1, photo_2 = "Photo 1", "Photo 2"
    compare = "Compare"
    compare_waiting = "Upload two photos."
    compare_faces = "The two faces compared"
    compare_pick = "Faces found: tap one to compare it instead"
    main_face = "main"
    face_1, face_2 = "Face in photo 1", "Face in photo 2"
    about = "About this gallery"
    people = "Who is in this gallery (search by name)"
    people_headers = ("person", "photos")
    failed = "Nothing to show: try again."
    title = "rvs: reverse visual search"
    reading_video = "reading the video"
    no_photo = "upload a photo first (or click an example)"
    bad_k = "k must be a number of results, not {!r}"
    no_tile = "search first, then pick a result tile"
    photo_gone = "the photo searched is no longer on the page: upload it again"
    nothing_to_share = "upload a photo and search first"
    largest = "1 (largest)"  # the face picker's first option (rvs.app.answers.face_choices)


VIDEO_MODES = {"frame": "Frame (find the moment this picture was taken from)", "face": "Person (face)"}
VIDEO_EXAMPLES = {"frame": "Find this frame of the video (a still at 2.00 s)", "face": "Find this person (a face seen at 1.00 s)"}
PHOTO_EXAMPLES = {"group": "A group photo (several faces)", "probe": "{name} (a photo not in the gallery)"}
CHART_WORDS = {"time": "time", "segment": "matching segment", "threshold": "match threshold", "moment": "moment"}
CHART_TITLES = {
    "face": "Face similarity per frame · shaded: this person",
    "frame": "Fused similarity per frame · shaded: matching frames",
    "moments": "Keypoint match per frame · ▼ moments",
}


def privacy_note(minutes: int) -> str:
    return (
        "**Privacy.** Uploads are processed in memory for your request only: nothing is logged or stored by rvs, "
        "derived video features of uploads are deleted after the search, and Gradio's temporary copies are swept "
        f"within {minutes} minutes. **Caveat.** The gallery is LFW, a research benchmark of public "
        "figures; a name is given only above a calibrated probability, and look-alikes are similarities, not "
        "identifications. Do not use this to identify private people."
    )


HEADER = """# rvs · reverse visual search

**Upload a photo: rvs finds each face and tells you who it is when that person is in its gallery
of public figures, or whom the face looks like.** The *Video* tab finds a picture or a person in a
video; *Same person?* compares two photos.
"""

PREPARING = {
    "hub": "downloading and checking the gallery {repo}",
    "load": "loading the face models and the gallery",
    "build": "building a starter gallery from the LFW photos here (once; a few minutes on 2 cores)",
}


_SERVER_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s/'\"`()<>,;]+/)+([^\s/'\"`()<>,;]*)")


def hide_paths(text: str) -> str:
    """`text` with every absolute server path cut to its last part ("/root/.cache/rvs/index/lfw"
    -> "lfw"): what the page and API clients are told; the log keeps the whole path."""
    return _SERVER_PATH.sub(lambda m: m.group(1) or "/", str(text))


def preparing_line(what: str) -> str:
    return f"- **Preparing the gallery**: {what}. Video frame search works already; image search starts when this line changes."


def gallery_line(photos: int, people: int, lfw: bool) -> str:
    """What the gallery is, in the header's words: "13,228 photos of 5,748 public figures from LFW"."""
    who = f"{people:,} public figures from LFW (Labeled Faces in the Wild)" if lfw else f"{people:,} people"
    return f"- Gallery: {photos:,} photos of {who}\n- Details and the list of people: *About this gallery*, below."


def about_lines(faces: int, people: int, origin: str | None, model_id: str, open_set: dict | None) -> str:
    """The "About this gallery" section: where the gallery came from, the model, how names are decided."""
    lines = [f"- **Gallery**: {faces:,} faces of {people:,} people"]
    if origin:
        lines.append(f"- **From**: {origin}")
    lines.append(f"- **Model**: `{model_id}`")
    if isinstance(open_set, dict) and "threshold" in open_set:
        st = open_set.get("stats", {})
        lines.append(
            f"- **Names**: given when the probability of being right exceeds {format_probability(open_set['threshold'])}; "
            f"calibrated on this gallery for at most {open_set['target_fpir']:.0%} of people not in it getting a name "
            f"({st.get('fpir_calibration', 0):.2%} on its calibration strangers)"
        )
    else:
        lines.append("- **Names**: this gallery has no open-set calibration, so no one is named")
    return "\n".join(lines)


MATCH_NOTE = "match % = how likely two faces this far apart are the same person (calibrated on LFW photo pairs; the distance is in the tooltip, JSON and CSV)"


def search_footnote(n_faces: int, total_ms: float) -> str:
    """The small line under an answer: how many faces, how long (details in the JSON), what match % means."""
    return f"{n_faces} face{'s' if n_faces != 1 else ''} found · {total_ms:.0f} ms · {MATCH_NOTE}"


def tile_tooltip(distance: float) -> str:
    """A result tile's tooltip, for experts: the raw distance."""
    return f"distance {distance:.3f} between unit embeddings (0 = identical, 2 = opposite)"


def match_strength(distance: float, cal: Any) -> str:
    """A result tile's strength: "match 97%" (the 1:1 same-person probability for this distance),
    or the distance itself for a model without a 1:1 calibration."""
    return f"match {format_probability(cal.probability(distance))}" if cal is not None else f"{distance:.3f}"


def face_choices(n: int) -> list[str]:
    """The face picker's options for an image with n faces (numbers follow the boxes drawn)."""
    if n <= 0:
        return [Words.largest]
    return [Words.largest, *[str(i) for i in range(2, n + 1)], *(["all"] if n > 1 else [])]


def parse_k(value: Any, default: int) -> int:
    """The number of results a client asked for (1..100), or one clear line."""
    if value in (None, ""):
        return default
    try:
        return max(1, min(100, int(float(value))))
    except (TypeError, ValueError, OverflowError):
        raise BadInputError(Words.bad_k.format(str(value)[:40])) from None


def span(start: float, end: float, step: float, duration: float) -> tuple[float, float]:
    """A segment as shown: until the next sample after its last one, so never zero length."""
    stop = min(end + step, duration) if duration > 0 else end + step
    return start, stop if stop > start else start + max(step, 0.01)


def parse_face(value: str | int | None) -> str | int:
    """"all" | face number (1-based) from the picker's value ("1 (largest)", "2", "all", "largest")."""
    if value is None:
        return 1
    if isinstance(value, int):
        return value
    v = str(value).strip().lower()
    if v in ("", "largest"):
        return 1
    if v == "all":
        return "all"
    head = v.split()[0]
    if head.isdigit() and int(head) >= 1:
        return int(head)
    raise BadInputError(f"face must be 'all', 'largest' or a face number, got {value!r}")


def pretty_name(identity: str) -> str:
    return identity.replace("_", " ")


def no_face_markdown(error: str) -> str:
    """The page's one sentence when a photo has no face (the error already says it)."""
    text = str(error).strip()
    return f"**{text[:1].upper()}{text[1:]}**"


def answer_line(ident: Any) -> str:
    """One plain line for a face's answer (CLI, CSV, logs): "George Clooney (97%)",
    "possibly George Clooney (57%; below the 90% needed to name)" or "no match in this gallery"."""
    if ident.identity is not None:
        return f"{pretty_name(ident.identity)} ({format_probability(ident.probability)})"
    if ident.answer == "possible":
        bar = f"; below the {format_probability(ident.threshold)} needed to name" if ident.threshold is not None and not ident.reason else ""
        why = f"; {ident.reason}" if ident.reason else ""
        return f"possibly {pretty_name(ident.candidate)} ({format_probability(ident.probability)}{bar}{why})"
    why = f" ({ident.reason})" if ident.reason else ""
    return f"no match in this gallery{why}"


def describe_identification(fr: Any, people: int, label: str = "") -> str:
    """Markdown for one searched face: the name with its calibrated probability; "Possibly NAME"
    with its probability and the bar it missed; or "No match in this gallery" with why, the
    nearest faces presented as look-alikes."""
    ident = fr.identification
    if ident.identity is None and ident.answer == "possible":
        name, p = pretty_name(ident.candidate), format_probability(ident.probability)
        why = (
            f"This face is not named because {ident.reason}."
            if ident.reason
            else f"{p} probability, below the {format_probability(ident.threshold)} this gallery of {people:,} people needs to name someone."
        )
        return f"### {label}Possibly {name} ({p})\n{why} The faces below are **look-alikes**, {name} among them, until a name is given."
    if ident.identity is not None:
        return (
            f"### {label}{pretty_name(ident.identity)}\n**{format_probability(ident.probability)}** probability that this is "
            f"{pretty_name(ident.identity)} (calibrated for this gallery of {people:,} people; a name is given above "
            f"{format_probability(ident.threshold)})"
            if fr.matches
            else f"### {label}{pretty_name(ident.identity)}"
        )
    why = ident.reason or "no one in this gallery resembles this face closely enough to name"
    return f"### {label}No match in this gallery\nThis face is not named: {why}. The faces below are **look-alikes, not matches**."


def video_answer(res: VideoResult, path: Path, read_frames: Callable) -> VideoAnswer:
    """A video search result as frames, plot, table rows and summary (`read_frames` fetches the
    frames shown)."""
    if res.mode == "frame" and res.fusion == "moments":
        return moments_answer(res, path, read_frames)
    face = res.mode == "face"
    segs = list(res.segments)
    shown = segs[:MAX_VIDEO_FRAMES_SHOWN]
    hits = [max(s.hits, key=lambda h: (h.rank, h.score)) if s.hits else None for s in shown]
    times = [s.best_time for s in shown]
    closest_only = not shown and res.closest is not None
    if closest_only:
        times, hits = [res.closest.time], [res.closest]
    frames = []
    for t, hit, img in zip(times, hits, read_frames(path, times) if times else []):
        if face and hit is not None and hit.faces:
            labels = [f"{f.similarity:.2f}" for f in hit.faces]
            img = draw_faces(img, [f.box for f in hit.faces], labels=labels, max_side=720)
        else:
            img = fit(img, 720)[0]
        score = hit.score if hit is not None else float("nan")
        caption = f"{format_time(t)} · score {score:.2f}"
        frames.append((img, f"closest: {caption} (below threshold)" if closest_only else caption))
    # Face mode's curve is a cosine similarity while its threshold is a distance.
    thr = 1.0 - res.threshold**2 / 2.0 if face else res.threshold
    marks = [] if closest_only else [(t, h.score if h is not None else float("nan"), c) for t, h, (_, c) in zip(times, hits, frames)]
    # A segment lasts until the next sample after its last one (never zero length); three columns fit a phone.
    step = _sample_step(res)
    spans = [span(s.start, s.end, step, res.duration) for s in segs]
    plot = similarity_chart(
        res.curve, spans, marks, threshold=thr, duration=res.duration,
        y_title="similarity", title=CHART_TITLES["face" if face else "frame"], words=CHART_WORDS,
    )
    rows = [
        [f"{format_time(a)}–{format_time(b)}", "this person" if face else "matching frames", round(float(s.score), 2)]
        for s, (a, b) in zip(segs, spans)
    ]
    t = res.timings
    head = (
        f"**{len(segs)} matching segment{'s' if len(segs) != 1 else ''}**"
        if segs
        else "**No match**: nothing in the video reaches the threshold"
        + (f" (closest at {format_time(res.closest.time)}, score {res.closest.score:.2f})" if res.closest else "")
    )
    summary = (
        f"{head} · {res.n_samples} frames compared ({res.sample_fps:.1f}/s of a {res.duration:.1f} s, "
        f"{res.width}x{res.height} video) · {t.get('total_s', 0):.1f} s"
        + (" (features cached)" if res.cached else "")
    )
    data = _with_player_times(res.to_dict(curve=False, hits=False), [s.best_time for s in segs], rows, times[: len(frames)])
    return VideoAnswer(frames, plot, rows, summary, data)


def moments_answer(res: VideoResult, path: Path, read_frames: Callable) -> VideoAnswer:
    """Frame search answered with moments: the best frames with their reading ("same frame",
    "same shot", "similar scene"), one table row each, segments only around same-frame peaks."""
    moments = list(res.moments)[:MAX_VIDEO_FRAMES_SHOWN]
    times = [m.time for m in moments]
    frames = [(fit(img, 720)[0], m.caption()) for m, img in zip(moments, read_frames(path, times) if times else [])]
    thr = res.threshold if res.threshold == res.threshold else None  # NaN: nothing matched
    step = _sample_step(res)
    plot = similarity_chart(
        res.curve, [span(s.start, s.end, step, res.duration) for s in res.segments], [(m.time, m.score, m.caption()) for m in moments],
        threshold=thr, duration=res.duration, y_title="score", title=CHART_TITLES["moments"], words=CHART_WORDS,
    )
    # Three columns, readable on a phone without scrolling sideways; a moment's segment is in the JSON.
    rows = [[format_time(m.time), m.reading, round(float(m.score), 2)] for m in res.moments]
    t = res.timings
    summary = (
        f"**{res.describe()}** · {res.n_samples} frames compared ({res.duration:.1f} s, {res.width}x{res.height} video) · "
        f"{t.get('total_s', 0):.1f} s" + (" (features cached)" if res.cached else "")
    )
    data = _with_player_times(res.to_dict(curve=False, hits=False), [m.time for m in res.moments], rows, times[: len(frames)])
    return VideoAnswer(frames, plot, rows, summary, data, TABLE_HEADERS)


def _sample_step(res: VideoResult) -> float:
    """Seconds between two samples of the search (0 when unknown)."""
    return 1.0 / res.sample_fps if res.sample_fps > 0 else 0.0


def _with_player_times(data: dict, row_times: list[float], rows: list[list[Any]], frame_times: list[float]) -> dict:
    """`data` with where the player goes: "seek_times" per table row, "table_times" (each row's
    first cell: which row was tapped, even in a re-sorted table), "frame_times" per frame shown."""
    data["seek_times"] = [round(t, 3) for t in row_times]
    data["table_times"] = [row[0] for row in rows]
    data["frame_times"] = [round(t, 3) for t in frame_times]
    return data


def results_csv(data: dict) -> str | None:
    """The search result (API dict) as a CSV file in a fresh temporary folder, one row per result
    tile; its path (None when there is nothing to write)."""

    rows = []
    for r in data.get("results") or []:
        ident = r.get("identification") or {}
        for m in r.get("matches") or []:
            rows.append(
                [r.get("face"), ident.get("answer") or "", ident.get("identity") or "",
                 ident.get("candidate") if ident.get("answer") == "possible" else "", ident.get("probability"), m.get("rank"), m.get("identity"),
                 m.get("distance"), m.get("gallery_path")]
            )
    if not rows:
        return None
    d = Path(tempfile.mkdtemp(prefix="rvs-results-"))
    path = d / "rvs-results.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["face", "answer", "named", "possibly", "probability", "rank", "gallery_identity", "distance", "gallery_photo"])
        w.writerows(rows)
    return str(path)


# ---------------------------------------------------------------------------------------------
# The video library (rvs.library)

LIBRARY_MODES = {"person": "This person, in every video", "frame": "This picture, in every video"}


def library_intro(n_videos: int, hours: float) -> str:
    return f"Search {n_videos} videos ({hours * 60:.0f} min) at once: which videos show this person or this picture, and when."


def library_answer(res: Any, frame_of: Callable[[Any], Image.Image | None]) -> tuple[list[tuple[Image.Image, str]], str, dict]:
    """A library search as (gallery of hits: best frame + "video · 1:02.50 · same person", a
    markdown summary, the result as a dict). `frame_of(hit)` gives the best frame, or None (the
    track's face thumbnail is shown then)."""
    tiles = []
    for h in res.hits:
        img = frame_of(h)
        if img is None and h.thumb is not None:
            img = Image.fromarray(np.asarray(h.thumb, np.uint8))
        if img is None:
            continue
        # Library segments already end one sample after their last (rvs.library.search).
        segs = ", ".join(f"{format_time(s.start)}–{format_time(s.end)}" for s in h.segments[:3]) + (" ..." if len(h.segments) > 3 else "")
        tiles.append((img, f"{h.video} · {format_time(h.best_time)} · {h.decision} · {segs}"))
    what = "this person" if res.mode == "person" else "this picture"
    if res.hits:
        names = ", ".join(h.video for h in res.hits[:5]) + (" ..." if len(res.hits) > 5 else "")
        summary = f"**Found {what} in {len(res.hits)} of {res.videos_searched} videos:** {names}"
    else:
        summary = f"**Not found in any of the {res.videos_searched} videos.**"
        if res.closest is not None:
            summary += f" The closest face ({res.closest.video} at {format_time(res.closest.best_time)}) is not the same person."
    return tiles, summary, res.to_dict()


# ---------------------------------------------------------------------------------------------
# Same person? (rvs.faces.compare)

COMPARE_INTRO = "Two photos: are they the same person? The main face of each is compared; when a photo has several, tap another one on the numbered pictures below the answer."
VERDICT_WORDS = {"same person": "Same person", "different people": "Different people", "unsure": "Unsure"}


def compare_line(c: Any) -> str:
    """One line for the CLI: "Same person: 97% (distance 0.62; ...)"."""
    if c.verdict is None:
        return f"distance {c.distance:.3f} (this model has no 1:1 calibration: no same-person answer)"
    v, cal = c.verdict, c.calibration
    head = f"{VERDICT_WORDS[v.answer]}: {format_probability(v.probability)}" if v.answer == "same person" else VERDICT_WORDS[v.answer]
    return (
        f"{head} (probability of the same person {format_probability(v.probability)}, distance {c.distance:.3f}; "
        f"'same person' at <= {cal.same_threshold:.3f}, {_far_words(cal)}; 'different people' at >= {cal.different_threshold:.3f})"
    )


def _far_words(cal: Any) -> str:
    n_diff = cal.pairs // 2
    accepted = round(cal.far_at_same * n_diff)
    return f"which accepted {'none' if accepted == 0 else f'{accepted:,}'} of LFW's {n_diff:,} different-person pairs (held-out folds)"


def compare_markdown(c: Any) -> str:
    """The page's answer for a comparison: the verdict first, then what it rests on."""
    if c.verdict is None:
        return f"**Distance {c.distance:.3f}.** This model has no same-person calibration, so no answer."
    v, cal = c.verdict, c.calibration
    head = {
        "same person": f"## Same person: {format_probability(v.probability)}",
        "different people": "## Different people",
        "unsure": f"## Unsure ({format_probability(v.probability)} same person)",
    }[v.answer]
    return (
        f"{head}\n\nCalibrated on {cal.pairs:,} LFW photo pairs: \"same person\" when the faces are at most "
        f"{cal.same_threshold:.2f} apart ({_far_words(cal)}), "
        f"\"different people\" from {cal.different_threshold:.2f}, unsure in between. This face is {c.distance:.2f} from that one."
        + _which_faces(c)
    )


def _which_faces(c: Any) -> str:
    """Which faces were compared, when a photo has several."""
    if all(n <= 1 for n in c.counts):
        return ""
    return "\n\nCompared: " + " with ".join(f"face {num} of {cnt} in photo {k + 1}" for k, (num, cnt) in enumerate(zip(c.numbers, c.counts))) + "."


def face_to_face_markdown(name: str, distance: float, cal: Any, n_other: int) -> str:
    """The words of a result tile opened face to face: who, how strong, what it rests on."""
    strength = (
        f"**match {format_probability(cal.probability(distance))}**: the probability that two faces this far apart "
        f"(distance {distance:.3f}) are the same person, calibrated on LFW photo pairs"
        if cal is not None
        else f"distance {distance:.3f} (lower is more alike)"
    )
    more = f"{n_other} more photo{'s' if n_other != 1 else ''} of {name} in the gallery" if n_other else f"no other photo of {name} in the gallery"
    return f"### {name}\n{strength}. Your face first, then the gallery photo; {more} below."


# ---------------------------------------------------------------------------------------------
# Sharing a result (rvs.app.shared)


def share_note(days: float) -> str:
    return (
        f"Sharing keeps, on this server for {days:g} days: the searched face cropped from your photo (not the photo) "
        "and this answer. Nothing is kept unless you press Share."
    )


def share_link_markdown(rid: str, days: float, page_url: str = "") -> str:
    """The link to a shared result: the page's own address (when the browser sent it) with ?result=ID."""
    url = f"{page_url}?result={rid}"
    return f"**Link to this result:** [{url}]({url}) (kept {days:g} days on this server: the face crop and the answer)"


def shared_expired(days: float) -> str:
    return f"**This shared result has expired or does not exist** (shared results are kept {days:g} days)."


def shared_header(summary: str) -> str:
    return f"*A shared result.*\n\n{summary}"
