"""Reverse video search (rvs.video.api) on the real sample video: frame mode, face mode, cache, errors, CLI.

The video is processed once per mode (module-scoped fixtures, one tmp cache for the module);
later queries hit the cache.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageEnhance

from rvs.config import PROJECT_ROOT, Config, default_data_dir
from rvs.errors import BadInputError, NoFaceError
from rvs.faces.embedders import get_spec, video_threshold
from rvs.video import decode as video_decode
from rvs.video import frames as video_frames
from rvs.video.api import search_video_faces, search_video_frames
from rvs.video.reader import FrameStream, probe_video, read_frame, read_frames
from rvs.video.results import VideoResult

VIDEO = default_data_dir() / "videos" / "arcade_faces.mp4"
BUSH = default_data_dir() / "lfw" / "images_deepfunneled" / "George_W_Bush" / "George_W_Bush_0001.jpg"

pytestmark = pytest.mark.skipif(not VIDEO.exists(), reason=f"sample video missing: {VIDEO}")


def degrade(img: Image.Image, width: int, quality: int, brightness: float) -> Image.Image:
    """What happens to a frame shared online: resized, JPEG re-encoded, brightened."""
    small = img.resize((width, round(img.height * width / img.width)), Image.BICUBIC)
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=quality)
    return ImageEnhance.Brightness(Image.open(buf).convert("RGB")).enhance(brightness)


def iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area > 0 else 0.0


@pytest.fixture(scope="module")
def cfg(tmp_path_factory) -> Config:
    return Config(cache_dir=tmp_path_factory.mktemp("video-cache"))


@pytest.fixture(scope="module")
def frame_query() -> Image.Image:
    return degrade(read_frame(VIDEO, 2.0), width=640, quality=90, brightness=1.15)


@pytest.fixture(scope="module")
def first_frame_search(cfg, frame_query):
    """The first frame-mode query: decodes the video and fills the cache."""
    calls: list[tuple[float, str]] = []
    t = time.perf_counter()
    result = search_video_frames(frame_query, VIDEO, cfg, progress=lambda f, d: calls.append((f, d)))
    return result, time.perf_counter() - t, calls


# ------------------------------------------------------------------------------------------
# Frame mode
# ------------------------------------------------------------------------------------------


def test_frame_found_at_known_time(first_frame_search):
    r, _, _ = first_frame_search
    assert isinstance(r, VideoResult) and r.mode == "frame"
    assert r.fps == pytest.approx(25.0) and r.frame_count == 105 and r.duration == pytest.approx(4.2)
    assert (r.width, r.height) == (1920, 1080)
    assert r.n_samples == 105 and len(r.curve) == 105 and r.sample_fps == pytest.approx(25.0)
    assert not r.cached and r.frames_decoded == 105
    assert r.segments, f"no match; closest {r.closest}"
    top = r.segments[0]
    assert abs(top.best_time - 2.0) <= 0.1, top
    assert top.start <= top.best_time <= top.end and top.score >= r.threshold
    best = next(h for h in top.hits if h.frame == top.best_frame)
    assert best.phash is not None and best.hist is not None and best.orb is not None
    assert 0 <= best.phash <= 1 and -1 <= best.hist <= 1 and 0 <= best.orb <= 1
    # Segments are best first and within the video.
    assert [s.rank for s in r.segments] == sorted((s.rank for s in r.segments), reverse=True)
    assert all(0 <= s.start <= s.end <= r.duration for s in r.segments)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["segments"][0]["best_frame"] == top.best_frame and len(d["curve"]) == 105
    assert {"features_s", "match_s", "total_s"} <= set(d["timings"])


def test_progress_reported(first_frame_search):
    _, _, calls = first_frame_search
    fracs = [f for f, _ in calls]
    assert len(calls) >= 5 and fracs == sorted(fracs) and fracs[-1] == 1.0 and 0 <= fracs[0]
    assert all(isinstance(d, str) and d for _, d in calls)


def test_second_query_uses_cache(cfg, frame_query, first_frame_search, monkeypatch):
    """Counted, not timed (bench/video.py times it): the second query decodes no frame."""
    first, _, _ = first_frame_search
    decodes: list = []

    def no_decoding(*a, **k):
        decodes.append(a)
        raise AssertionError("the video was decoded again")

    monkeypatch.setattr(video_frames, "FrameStream", no_decoding)
    second = search_video_frames(frame_query, VIDEO, cfg)
    assert second.cached and second.frames_decoded == 0 and decodes == []
    assert [s.to_dict() for s in second.segments] == [s.to_dict() for s in first.segments]


def test_cache_keyed_by_content(cfg, frame_query, first_frame_search, tmp_path):
    copy = tmp_path / "renamed copy.mp4"
    copy.write_bytes(VIDEO.read_bytes())
    r = search_video_frames(frame_query, copy, cfg)
    assert r.cached and r.video == str(copy)
    assert [s.best_frame for s in r.segments] == [s.best_frame for s in first_frame_search[0].segments]


def test_cache_entry_is_not_pickle(cfg, first_frame_search):
    entries = list((Path(cfg.cache_dir) / "video").glob("*/frames-*"))
    assert len(entries) == 1
    names = {p.name for p in entries[0].iterdir()}
    assert names == {"meta.json", "features.npz", "orb.u8", "orb_xy.f16", "thumbs.u8"}
    meta = json.loads((entries[0] / "meta.json").read_text())
    assert meta["n_samples"] == 105 and meta["video"]["decoded_frames"] == 105
    with np.load(entries[0] / "features.npz", allow_pickle=False) as z:
        assert z["phash"].dtype == np.uint64 and len(z["orb_offsets"]) == 106


def test_mean_fusion_localises_a_harsh_copy(cfg, first_frame_search):
    """A JPEG-q60, 20%-brightened copy: the report's rule misses it, the mean fusion finds exactly it."""
    q = degrade(read_frame(VIDEO, 3.0), width=480, quality=60, brightness=1.2)
    report = search_video_frames(q, VIDEO, dataclasses.replace(cfg, video_fusion="report"))
    assert report.cached
    assert report.closest is not None and abs(report.closest.time - 3.0) <= 0.1  # ranking still right
    mean = search_video_frames(q, VIDEO, dataclasses.replace(cfg, video_fusion="mean"))
    assert mean.cached and mean.threshold == cfg.video_mean_threshold
    assert mean.segments and abs(mean.segments[0].best_time - 3.0) <= 0.1
    assert mean.segments[0].end - mean.segments[0].start <= 0.5  # one moment, not the whole shot


def test_unrelated_photo_does_not_match_frames(cfg, first_frame_search):
    for fusion in ("moments", "report", "mean"):
        r = search_video_frames(BUSH, VIDEO, dataclasses.replace(cfg, video_fusion=fusion))
        assert r.segments == [] and not r.matched
        assert r.closest is not None and r.closest.score < 0.5
        assert all(m.reading == "similar scene" for m in r.moments)


def test_sampling_rate_and_corrupt_cache(cfg, frame_query):
    c = dataclasses.replace(cfg, video_frame_fps=5.0)
    r = search_video_frames(frame_query, VIDEO, c)
    assert not r.cached and r.n_samples == 21 and r.sample_fps == pytest.approx(5.0)
    assert r.segments and abs(r.segments[0].best_time - 2.0) <= 0.1
    times = [t for t, _ in r.curve]
    assert times[:3] == pytest.approx([0.0, 0.2, 0.4])
    # A damaged cache entry is detected and rebuilt, not trusted and not fatal.
    (entry,) = [p for p in (Path(cfg.cache_dir) / "video").glob("*/frames-*") if json.loads((p / "meta.json").read_text())["n_samples"] == 21]
    (entry / "features.npz").write_bytes(b"garbage")
    again = search_video_frames(frame_query, VIDEO, c)
    assert not again.cached and [s.to_dict() for s in again.segments] == [s.to_dict() for s in r.segments]
    assert search_video_frames(frame_query, VIDEO, c).cached


def test_read_frames():
    a, b = read_frames(VIDEO, [2.0, 0.0])
    assert a.size == (1920, 1080) and a.mode == "RGB"
    assert np.array_equal(np.asarray(a), np.asarray(read_frame(VIDEO, 2.0)))
    assert not np.array_equal(np.asarray(a), np.asarray(b))
    assert read_frame(VIDEO, 99.0).size == (1920, 1080)  # past the end: the last frame
    # Seeking is frame-accurate: the same pixels as decoding from the start.
    for i, t, bgr in FrameStream(VIDEO, 0, lambda f: f):
        if i == 50:
            assert t == pytest.approx(2.0)
            assert np.array_equal(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.asarray(a))
            break
    info = probe_video(VIDEO)
    assert info.frame_count == 105 and info.fps == pytest.approx(25.0)


# ------------------------------------------------------------------------------------------
# Frame mode: the moment, on a small video of several shots with known times
# ------------------------------------------------------------------------------------------

PHOTOS = default_data_dir() / "photos"


@pytest.fixture(scope="module")
def shots_video(tmp_path_factory):
    """4 s at 25 fps, 480x270: a pan over multiface.jpg, part of the sample video, a short (0.68 s)
    zoom into a portrait, another part of the sample video. Returns (path, [(first, last) frame])."""
    from rvs.video.synth import clip, load_rgb, pan, read_rgb, write_video

    af = read_rgb(VIDEO, 105)
    shots = [
        pan(load_rgb(PHOTOS / "multiface.jpg"), (0.40, 0.5, 0.7), (0.60, 0.5, 0.7), 25, "multiface pan"),
        clip(af[10:40], "arcade 0.4-1.6 s"),
        pan(load_rgb(PHOTOS / "paul_rudd" / "1.jpg"), (0.5, 0.35, 0.9), (0.5, 0.35, 0.7), 17, "rudd zoom"),
        clip(af[70:98], "arcade 2.8-3.9 s"),
    ]
    path = tmp_path_factory.mktemp("shots") / "shots.mp4"
    placed = write_video(path, shots, size=(480, 270))
    return path, [(p.first, p.last) for p in placed]


def _moment(cfg, query, path):
    r = search_video_frames(query, path, cfg)
    assert r.moments, f"nothing found; closest {r.closest}"
    return r, r.moments[0]


def test_exact_frame_finds_itself(cfg, shots_video):
    """A lossless copy of a frame is found at its own frame, in every shot, the short one too."""
    path, shots = shots_video
    for first, last in shots:
        f = (first + last) // 2
        r, m = _moment(cfg, read_frame(path, f / 25), path)
        assert m.frame == f and m.reading == "same frame" and m.ncc > 0.95, (f, m)
        seg = r.segments[0]
        assert seg.start <= f / 25 <= seg.end and seg.end - seg.start <= 0.5


def test_mirrored_and_cropped_copies_found_at_their_time(cfg, shots_video):
    """A horizontally flipped copy and an 80% centre crop (resized back) point at the right time
    (+-0.3 s), in a pan over a photo and in real footage."""
    path, shots = shots_video
    for f in (shots[0][0] + 8, shots[1][0] + 15, shots[3][0] + 10):
        frame = read_frame(path, f / 25)
        w, h = frame.size
        crop = frame.crop((w // 10, h // 10, w - w // 10, h - h // 10)).resize((w, h), Image.BICUBIC)
        for name, q in (("flip", frame.transpose(Image.FLIP_LEFT_RIGHT)), ("crop", crop)):
            r, m = _moment(cfg, q, path)
            assert abs(m.time - f / 25) <= 0.3, (name, f, m)
            assert m.reading == "same frame"
            assert m.hit.flipped == (name == "flip")


def test_segment_stays_in_its_shot(cfg, shots_video):
    """A frame at the very end of a shot: its segment ends at the cut, the next shot (another
    part of the same sample video, same place and people) is not part of it."""
    path, shots = shots_video
    first, last = shots[1]
    f = last - 1
    r, m = _moment(cfg, degrade(read_frame(path, f / 25), width=400, quality=70, brightness=1.1), path)
    assert abs(m.time - f / 25) <= 0.1
    seg = r.segments[0]
    assert first / 25 - 1e-6 <= seg.start <= seg.end <= last / 25 + 1e-6, (seg.start, seg.end, shots[1])
    # Single-shot sample video: the answer is a moment, not the whole video (the report's rule
    # matches nearly all of it).
    whole = search_video_frames(read_frame(VIDEO, 1.0), VIDEO, cfg)
    report = search_video_frames(read_frame(VIDEO, 1.0), VIDEO, dataclasses.replace(cfg, video_fusion="report"))
    covered = sum(s.end - s.start for s in whole.segments)
    assert abs(whole.moments[0].time - 1.0) <= 0.04 and covered <= 0.3
    assert sum(s.end - s.start for s in report.segments) >= 3.0


def test_absent_moment_reads_same_shot(cfg, shots_video):
    """A frame of the sample video from a part the test video leaves out (2.2 s): the scene is
    there, the moment is not. It is found as "same shot", with no segment."""
    path, _ = shots_video
    r = search_video_frames(read_frame(VIDEO, 2.2), path, cfg)
    assert r.moments and all(m.reading == "same shot" for m in r.moments), [m.to_dict() for m in r.moments]
    assert r.segments == [] and not r.matched


# ------------------------------------------------------------------------------------------
# Face mode
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def face_query():
    """The largest face at 1.0 s, cut out of the frame with some background."""
    from rvs.video.faces import face_models, torch_threads

    frame = read_frame(VIDEO, 1.0)
    # The detector the search uses on video frames (loaded once, warm for the search).
    with torch_threads(Config().video_torch_threads):
        face = face_models(Config()).frame_detector.detect([np.asarray(frame)])[0][0]
    x1, y1, x2, y2 = face.box
    m = 0.4 * (x2 - x1)
    return frame.crop((int(x1 - m), int(y1 - m), int(x2 + m), int(y2 + m))), face.box


@pytest.fixture(scope="module")
def face_search(cfg, face_query):
    return search_video_faces(face_query[0], VIDEO, cfg)


def test_face_found_where_person_is_visible(face_search, face_query):
    r = face_search
    assert r.mode == "face" and r.threshold == video_threshold(Config()) == get_spec(Config().model).video_threshold and r.query_box is not None
    assert r.n_samples == 9 and r.sample_fps == pytest.approx(2.0)
    assert r.segments, f"person not found; closest {r.closest}"
    top = r.segments[0]
    assert top.start <= 1.0 <= top.end
    # Face mode skips frames nothing refers to: the sample lands on a decoded frame near 1.0 s.
    hit = next(h for h in top.hits if abs(h.time - 1.0) <= 0.1)
    from rvs.video.faces import face_models

    largest = face_models(Config()).frame_detector.detect([np.asarray(read_frame(VIDEO, hit.time))])[0][0]
    assert hit.faces and iou(hit.faces[0].box, largest.box) > 0.8  # the query's person, at the sample's time
    assert all(f.distance <= r.threshold for s in r.segments for h in s.hits for f in h.faces)
    # The person walks out of the picture: not every sample matches.
    matched = sum(s.n_frames for s in r.segments)
    assert 2 <= matched < r.n_samples
    json.dumps(r.to_dict())  # NaN (frames without faces) must serialise


def test_face_mode_cached(cfg, face_query, face_search):
    again = search_video_faces(face_query[0], VIDEO, cfg)
    assert again.cached and again.frames_decoded == 0
    assert [s.to_dict() for s in again.segments] == [s.to_dict() for s in face_search.segments]


def test_someone_not_in_video_is_not_found(cfg, face_search):
    if not BUSH.exists():
        pytest.skip("LFW missing")
    r = search_video_faces(BUSH, VIDEO, cfg)
    assert r.cached and r.segments == []
    assert r.closest is not None and r.closest.faces[0].distance > r.threshold


def test_face_mode_query_without_face(cfg, tmp_path):
    flat = tmp_path / "sky.png"
    Image.new("RGB", (300, 200), (120, 170, 230)).save(flat)
    with pytest.raises(BadInputError, match="no face found") as e:
        search_video_faces(flat, VIDEO, cfg)
    assert isinstance(e.value, NoFaceError)


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad-videos")
    data = VIDEO.read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (d / "notes.mp4").write_text("these are my notes, not a video\n")
    # An AVI (header with the frame count up front) cut in half: it opens, then decodes short.
    cap = cv2.VideoCapture(str(VIDEO))
    w = cv2.VideoWriter(str(d / "full.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (320, 180))
    for _ in range(30):
        ok, f = cap.read()
        w.write(cv2.resize(f, (320, 180)))
    w.release()
    cap.release()
    avi = (d / "full.avi").read_bytes()
    (d / "truncated.avi").write_bytes(avi[: len(avi) // 2])
    read_frame(VIDEO, 1.0).save(d / "still.jpg")
    return d


def test_missing_video(cfg, frame_query, tmp_path):
    with pytest.raises(BadInputError, match="file not found"):
        search_video_frames(frame_query, tmp_path / "nope.mp4", cfg)


def test_not_a_video(cfg, frame_query, bad_files):
    with pytest.raises(BadInputError, match="cannot be opened as a video"):
        search_video_frames(frame_query, bad_files / "notes.mp4", cfg)


def test_truncated_mp4(cfg, frame_query, bad_files):
    with pytest.raises(BadInputError, match="truncated"):
        search_video_frames(frame_query, bad_files / "truncated.mp4", cfg)


def test_truncated_avi_decodes_short(cfg, frame_query, bad_files):
    assert probe_video(bad_files / "full.avi").frame_count == 30
    with pytest.raises(BadInputError, match=r"truncated or corrupt video: decoded \d+ of the 30 frames"):
        search_video_frames(frame_query, bad_files / "truncated.avi", cfg)
    # Nothing half-written left behind, and no empty directory for the failed video.
    assert not list((Path(cfg.cache_dir) / "video").glob("*/.tmp-*"))
    assert all(any(d.iterdir()) for d in (Path(cfg.cache_dir) / "video").iterdir())


def test_still_image_as_video(cfg, frame_query, bad_files):
    with pytest.raises(BadInputError, match="still image"):
        search_video_frames(frame_query, bad_files / "still.jpg", cfg)


def test_query_not_an_image(cfg, bad_files):
    with pytest.raises(BadInputError, match="not an image"):
        search_video_frames(bad_files / "notes.mp4", VIDEO, cfg)
    with pytest.raises(BadInputError, match="not an image"):
        search_video_faces(VIDEO, VIDEO, cfg)


def test_stream_stops_cleanly_when_consumer_stops():
    stream = FrameStream(VIDEO, 0, lambda f: f.shape)
    for i, _, _ in stream:
        if i == 3:
            break  # the decode thread must not hang on its full queue


# ------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------


def _cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RVS_CACHE_DIR": str(cache), "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "rvs", "video", *args], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=120
    )


@pytest.mark.parametrize("name, message", [("notes.mp4", "cannot be opened as a video"), ("truncated.mp4", "truncated")])
def test_cli_bad_video_one_line(cfg, bad_files, tmp_path, name, message):
    query = tmp_path / "q.jpg"
    read_frame(VIDEO, 1.0).resize((320, 180)).save(query)
    p = _cli(str(query), str(bad_files / name), cache=cfg.cache_dir)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], p.stderr
    assert p.stdout == ""


def test_cli_json_and_table(cfg, frame_query, first_frame_search, tmp_path):
    query = tmp_path / "q.jpg"
    frame_query.save(query, quality=95)
    p = _cli(str(query), str(VIDEO), "--json", cache=cfg.cache_dir)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["mode"] == "frame" and d["cached"] and abs(d["segments"][0]["best_time"] - 2.0) <= 0.1
    assert d["fusion"] == "moments" and d["moments"][0]["reading"] == "same frame" and abs(d["moments"][0]["time"] - 2.0) <= 0.1
    p = _cli(str(query), str(VIDEO), cache=cfg.cache_dir)
    assert p.returncode == 0, p.stderr
    assert "moment(s)" in p.stdout and "same frame" in p.stdout and "0:02.00" in p.stdout
    p = _cli(str(query), str(VIDEO), "--fusion", "mean", cache=cfg.cache_dir)
    assert p.returncode == 0, p.stderr
    assert "segment(s)" in p.stdout and "0:02.00" in p.stdout


# ------------------------------------------------------------------------------------------
# Decoding shrunk frames (rvs.video.decode) and its OpenCV fallback
# ------------------------------------------------------------------------------------------


def _opencv_small(path: Path, width: int) -> list[np.ndarray]:
    cap, out = cv2.VideoCapture(str(path)), []
    while True:
        ok, f = cap.read()
        if not ok:
            return out
        out.append(video_decode.downscale(f, width))


def test_yuv_decode_agrees_with_opencv():
    """Frames shrunk in YUV and converted small look like OpenCV's convert-then-shrink: about one
    level apart, and the same frame-mode features (masked histogram, pHash)."""
    assert video_decode.available()
    ours = [small for _, _, small in FrameStream(VIDEO, 0, lambda f: f, width=480)]
    ref = _opencv_small(VIDEO, 480)
    assert len(ours) == len(ref) == 105 and ours[0].shape == ref[0].shape == (270, 480, 3)
    fz = video_frames.Featurizer(Config())
    for i in range(0, 105, 13):
        assert np.abs(ours[i].astype(int) - ref[i]).mean() < 2.0
        (pa, ha, _), (pb, hb, _) = fz(ours[i])[:3], fz(ref[i])[:3]
        assert cv2.compareHist(ha, hb, cv2.HISTCMP_CORREL) > 0.99
        assert bin(int(pa) ^ int(pb)).count("1") <= 4


def test_other_pixel_formats_fall_back_to_opencv(tmp_path, monkeypatch):
    """A video that is not 8-bit 4:2:0 (here Motion JPEG at 4:4:4) goes through OpenCV, shrunk all
    the same."""
    import av

    path = tmp_path / "full-chroma.avi"
    with av.open(str(path), "w") as out:
        s = out.add_stream("mjpeg", rate=25)
        s.width, s.height, s.pix_fmt = 320, 180, "yuvj444p"
        for bgr in _opencv_small(VIDEO, 320)[:12]:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr[:, :, ::-1]), format="rgb24")
            for packet in s.encode(frame.reformat(format="yuvj444p")):
                out.mux(packet)
        for packet in s.encode():
            out.mux(packet)
    reasons: list[str] = []
    real = video_decode.iter_small_bgr

    def spy(*a, **k):
        try:
            return (yield from real(*a, **k))
        except video_decode.Unsupported as e:
            reasons.append(str(e))
            raise

    monkeypatch.setattr(video_decode, "iter_small_bgr", spy)
    stream = FrameStream(path, 0, lambda f: f.shape, width=160)
    shapes = [shape for _, _, shape in stream]
    assert reasons and "yuvj444p" in reasons[0]
    assert shapes == [(90, 160, 3)] * 12 and stream.info.decoded_frames == 12


def test_opencv_decoder_setting(cfg, frame_query, tmp_path):
    """RVS_VIDEO_DECODER=opencv decodes with OpenCV only, caches separately, and finds the frame."""
    c = dataclasses.replace(cfg, video_decoder="opencv", cache_dir=tmp_path / "cache")
    r = search_video_frames(frame_query, VIDEO, c)
    assert r.segments and abs(r.segments[0].best_time - 2.0) <= 0.1
    assert video_frames.Featurizer(c).params()["decoder"] == "opencv" != video_frames.Featurizer(cfg).params()["decoder"]
    with pytest.raises(BadInputError, match="unknown video decoder"):
        search_video_frames(frame_query, VIDEO, dataclasses.replace(c, video_decoder="gpu"))


# ------------------------------------------------------------------------------------------
# Player times: a video stream that starts late, a variable frame rate
# ------------------------------------------------------------------------------------------

LFW_DIR = default_data_dir() / "lfw" / "images_deepfunneled"


@pytest.fixture(scope="module")
def timed_videos(tmp_path_factory):
    """Two videos with a face shot (Colin Powell) between shots without faces, written the way
    real files come: `late` with its video stream starting 0.852 s after its audio, `vfr` with
    frame durations of 40 and 80 ms. Returns {name: (path, placed shots)}."""
    from rvs.video.synth import load_rgb, pan, shapes, vfr_durations, write_video

    powell = load_rgb(LFW_DIR / "Colin_Powell" / "Colin_Powell_0001.jpg")
    shots = [
        pan(shapes(1), (0.45, 0.5, 0.8), (0.55, 0.5, 0.7), 25, "shapes 1"),
        pan(powell, (0.50, 0.45, 0.95), (0.50, 0.42, 0.80), 40, "powell"),
        pan(shapes(2), (0.55, 0.5, 0.7), (0.45, 0.5, 0.8), 25, "shapes 2"),
    ]
    out = tmp_path_factory.mktemp("timed")
    return {
        "late": (out / "late.mp4", write_video(out / "late.mp4", shots, size=(480, 270), start_s=0.852)),
        "vfr": (out / "vfr.mp4", write_video(out / "vfr.mp4", shots, size=(480, 270), durations=vfr_durations(90, 25.0, seed=5))),
    }


@pytest.mark.parametrize("name", ["late", "vfr"])
def test_frame_mode_answers_on_the_players_clock(cfg, timed_videos, name):
    """The moment of a frame is where a player shows it (not frame index / fps: 0.85 s early
    for the late stream, drifting for the variable rate), and read_frame at that time returns it."""
    from rvs.video.synth import read_rgb

    path, placed = timed_videos[name]
    decoded = read_rgb(path)
    for shot in placed:
        k = (shot.first + shot.last) // 2
        truth = shot.time_of(k, 25.0)
        if name == "late":
            assert truth - k / 25.0 == pytest.approx(0.852, abs=1e-3)
        r = search_video_frames(Image.fromarray(decoded[k]), path, cfg)
        assert r.moments and r.moments[0].reading == "same frame"
        assert abs(r.moments[0].time - truth) <= 0.05, (shot.shot.name, r.moments[0].time, truth)
        assert np.abs(np.asarray(read_frame(path, truth), np.int16) - decoded[k]).mean() < 1.0
    assert r.duration == pytest.approx(placed[-1].times[-1] + (0.04 if name == "late" else 0.0), abs=0.09)


@pytest.mark.parametrize("name", ["late", "vfr"])
def test_face_mode_answers_on_the_players_clock(cfg, timed_videos, name):
    """Colin Powell (another photo of him) is found exactly while his shot is on screen."""
    path, placed = timed_videos[name]
    shot = placed[1]
    r = search_video_faces(LFW_DIR / "Colin_Powell" / "Colin_Powell_0002.jpg", path, cfg)
    assert len(r.segments) == 1, r.segments
    seg, step = r.segments[0], 1.0 / r.sample_fps
    t0, t1 = shot.times[0], shot.times[-1]
    # Sampled twice a second: the segment starts within one sample of the shot's first frame and
    # ends within one sample of its last; never outside the shot.
    assert t0 - 1e-6 <= seg.start <= t0 + step + 0.1 and t1 - step - 0.1 <= seg.end <= t1 + 1e-6, (seg.start, seg.end, t0, t1)
