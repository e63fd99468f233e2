"""The small video library a published artifact carries (`video-library/` in the artifact folder),
so a Space offers "search the video library" without any video of its own.

Built at export time from what this machine has: the shared sample video (`arcade_faces.mp4`,
people walking) and two short synthesised videos (rvs.video.synth: slow pans over the example
celebrity photos and the group photo, one with a late-starting video stream, one with a variable
frame rate), indexed with the gallery's model (rvs.library). The videos travel in
`video-library/media/`, and the library names them by paths relative to its folder, so the
artifact works wherever it is unpacked. Every file is listed in rvs.json and checked on pull.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from rvs.config import Config
from rvs.hub.artifacts import LIBRARY_SUBDIR

log = logging.getLogger(__name__)

MEDIA = "media"


def _synthesise(data: Path, media: Path) -> None:
    from rvs.video.synth import load_rgb, pan, vfr_durations, write_video

    photos = {p.parent.name: load_rgb(p) for p in sorted((data / "photos").glob("*/1.jpg"))}
    shots = [pan(img, (0.5, 0.35, 0.9), (0.5, 0.33, 0.75), 75, name) for name, img in photos.items()]
    if shots:
        write_video(media / "celebrities.mp4", shots, size=(640, 360), start_s=0.852)
    multi = data / "photos" / "multiface.jpg"
    if multi.is_file():
        group = load_rgb(multi)
        n = 125
        write_video(media / "group.mp4", [pan(group, (0.35, 0.5, 0.6), (0.65, 0.5, 0.6), n, "group pan")], size=(640, 360), durations=vfr_durations(n, 25.0, seed=1))


def bundle_library(config: Config, out_dir: Path) -> int:
    """Build the artifact's video library into out_dir/video-library; returns its video count
    (0, and nothing written, when this machine has none of the source media)."""
    from rvs.library import store
    from rvs.library.indexer import index_folder

    data = Path(config.data_dir)
    lib = out_dir / LIBRARY_SUBDIR
    media = lib / MEDIA
    media.mkdir(parents=True, exist_ok=True)
    sample = data / "videos" / "arcade_faces.mp4"
    if sample.is_file():
        shutil.copyfile(sample, media / sample.name)
    _synthesise(data, media)
    if not any(media.iterdir()):
        shutil.rmtree(lib)
        return 0
    summary = index_folder(media, lib, config, log_line=log.info, progress=False)
    # Paths relative to the library folder: the artifact is unpacked anywhere.
    m = store.read_manifest(lib)
    for v in m["videos"]:
        v["path"] = f"{MEDIA}/{v['name']}"
    (lib / store.MANIFEST).write_text(json.dumps(m, indent=1))
    return int(summary["videos"])
