"""Long CLI jobs report progress as lines when stderr is not a terminal (CI, nohup, a Space log)."""

from __future__ import annotations

import io
import subprocess
import sys

from conftest import PHOTOS, VIDEO, requires_data

from rvs.config import PROJECT_ROOT
from rvs.progress import LineProgress, progress_bar


def test_line_progress_every_tenth():
    out = io.StringIO()
    with progress_bar(100, "work", file=out) as bar:
        assert isinstance(bar, LineProgress)
        for _ in range(100):
            bar.update(1)
    lines = out.getvalue().splitlines()
    assert 9 <= len(lines) <= 11 and lines[-1].startswith("[rvs] work: 100%")


@requires_data
def test_video_cli_logs_progress_lines_when_piped(tmp_path):
    import os

    # A fresh video cache, so the faces are really found (a cached run has nothing to report).
    env = {**os.environ, "RVS_VIDEO_CACHE_DIR": str(tmp_path / "video-cache")}
    p = subprocess.run(
        [sys.executable, "-m", "rvs", "video", str(PHOTOS / "multiface.jpg"), str(VIDEO), "--mode", "face"],
        capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT, env=env,
    )
    assert p.returncode == 0, p.stderr[-500:]
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("[rvs] ")]
    assert len(lines) >= 5 and any("100%" in ln for ln in lines), p.stderr
    assert "\r" not in p.stderr
