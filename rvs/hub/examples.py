"""Example inputs for the demo, bundled into a published gallery so a Space has them too.

`bundle_examples(config, out_dir, index)` writes `examples/` (photos downscaled to at most
1024 px, the sample video, a still of it for frame search and a face from it for person search)
and `examples/examples.json`: [{"kind": "image", "file", "label"} | {"kind": "video", "file",
"query", "mode": "frame"|"face", "label"}]. `load_examples(folder)` reads it back, keeping only
entries whose files are inside the folder and present.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path, PurePosixPath

from PIL import Image

from rvs.config import Config
from rvs.errors import RvsError

log = logging.getLogger(__name__)

EXAMPLES_DIR = "examples"
EXAMPLES_JSON = "examples.json"
PROBE_PEOPLE = ["George_W_Bush", "Colin_Powell", "Serena_Williams", "Tony_Blair", "Gerhard_Schroeder", "Hugo_Chavez"]


def pretty(name: str) -> str:
    return name.replace("_", " ").strip().title() if name.islower() else name.replace("_", " ")


def probe_photos(index_meta: dict, lfw: Path, n: int = 2) -> list[tuple[str, Path]]:
    """Up to n LFW photos of gallery people that are not themselves in the gallery."""
    if not lfw.is_dir():
        return []
    people = set(index_meta["identity"])
    indexed = set(index_meta["path"])
    out = []
    for name in [*PROBE_PEOPLE, *sorted(people)]:
        if name not in people or len(out) >= n:
            continue
        for num in range(1, 31):
            p = lfw / name / f"{name}_{num:04d}.jpg"
            if not p.is_file():
                break
            if f"{name}/{p.name}" not in indexed:
                out.append((name, p))
                break
    return out


def bundle_examples(config: Config, out_dir: Path, index_meta: dict | None = None, detector=None) -> list[dict]:
    """Write the examples that exist on this machine into out_dir/examples; returns the entries."""
    from rvs.imageio import crop_box, load_image

    d = out_dir / EXAMPLES_DIR
    d.mkdir(parents=True, exist_ok=True)
    entries: list[dict] = []
    data = Path(config.data_dir)

    def add_image(src: Path, stem: str, label: str) -> None:
        try:
            img = load_image(src, config.max_pixels)
        except RvsError as e:
            log.warning("example %s skipped: %s", src, e)
            return
        img.thumbnail((1024, 1024), Image.LANCZOS)
        img.save(d / f"{stem}.jpg", format="JPEG", quality=90)
        entries.append({"kind": "image", "file": f"{EXAMPLES_DIR}/{stem}.jpg", "label": label})

    for p in sorted((data / "photos").glob("*/1.jpg")):
        add_image(p, p.parent.name, pretty(p.parent.name))
    if (data / "photos" / "multiface.jpg").is_file():
        add_image(data / "photos" / "multiface.jpg", "group", "A group photo (several faces)")
    if index_meta is not None:
        for name, p in probe_photos(index_meta, data / "lfw" / "images_deepfunneled"):
            add_image(p, p.stem, f"{pretty(name)} (a photo not in the gallery)")
    video = data / "videos" / "arcade_faces.mp4"
    if video.is_file():
        from rvs.video.api import read_frame

        (d / video.name).write_bytes(video.read_bytes())
        read_frame(video, 2.0).save(d / "video_frame_2.00s.jpg", format="JPEG", quality=92)
        entries.append(
            {"kind": "video", "file": f"{EXAMPLES_DIR}/{video.name}", "query": f"{EXAMPLES_DIR}/video_frame_2.00s.jpg", "mode": "frame",
             "label": "Find this frame of the video (a still at 2.00 s)"}
        )
        if detector is not None:
            img = read_frame(video, 1.0)
            faces = detector.detect_one(img)
            if faces:
                crop_box(img, faces[0].box, margin=0.6, size=256).save(d / "video_face_1.00s.jpg", format="JPEG", quality=92)
                entries.append(
                    {"kind": "video", "file": f"{EXAMPLES_DIR}/{video.name}", "query": f"{EXAMPLES_DIR}/video_face_1.00s.jpg", "mode": "face",
                     "label": "Find this person (a face seen at 1.00 s)"}
                )
    (d / EXAMPLES_JSON).write_text(json.dumps(entries, indent=1))
    return entries


def _inside(folder: Path, name: object) -> Path | None:
    if not isinstance(name, str) or not name:
        return None
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or "\\" in name:
        return None
    full = folder / p
    return full if full.is_file() else None


def load_examples(folder: Path) -> list[dict]:
    """Entries of folder/examples/examples.json with absolute, existing paths (bad ones dropped)."""
    try:
        raw = json.loads((folder / EXAMPLES_DIR / EXAMPLES_JSON).read_text())
    except (OSError, ValueError):
        return []
    out = []
    for e in raw if isinstance(raw, list) else []:
        if not isinstance(e, dict):
            continue
        f = _inside(folder, e.get("file"))
        label = str(e.get("label") or "")[:120]
        if f is None:
            continue
        if e.get("kind") == "image":
            out.append({"kind": "image", "file": f, "label": label})
        elif e.get("kind") == "video" and e.get("mode") in ("frame", "face"):
            q = _inside(folder, e.get("query"))
            if q is not None:
                out.append({"kind": "video", "file": f, "query": q, "mode": e["mode"], "label": label})
    return out
