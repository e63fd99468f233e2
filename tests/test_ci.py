"""CI is strict: under RVS_REQUIRE_DATA=1 (what .ci/run exports) a missing ../shared/data or a
missing browser fails the run; without it (a developer's machine) those tests skip."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_pytest(tmp_path: Path, target: str, **env: str) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k != "RVS_REQUIRE_DATA"}
    e.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT), target],
        cwd=ROOT,
        env=e,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ci_script_requires_everything():
    text = (ROOT / ".ci" / "run").read_text()
    assert "export RVS_REQUIRE_DATA=1" in text and text.index("RVS_REQUIRE_DATA=1") < text.index("make test")


def test_missing_data_skips_locally_and_fails_under_ci(tmp_path):
    target = "tests/test_search.py::test_gallery_summary"
    local = run_pytest(tmp_path, target, RVS_DATA=str(tmp_path / "no-data"))
    assert local.returncode == 0 and "1 skipped" in local.stdout, local.stdout[-2000:]
    ci = run_pytest(tmp_path, target, RVS_DATA=str(tmp_path / "no-data"), RVS_REQUIRE_DATA="1")
    assert ci.returncode != 0 and "a skip is a failure under RVS_REQUIRE_DATA=1" in ci.stdout, ci.stdout[-2000:]
    assert "real data not found" in ci.stdout


def test_missing_browser_skips_locally_and_fails_under_ci(tmp_path):
    target = "tests/test_browser.py::test_same_person_tab[390-844]"
    local = run_pytest(tmp_path, target, RVS_CHROMIUM=str(tmp_path / "no-chromium"))
    assert local.returncode == 0 and "1 skipped" in local.stdout, local.stdout[-2000:]
    ci = run_pytest(tmp_path, target, RVS_CHROMIUM=str(tmp_path / "no-chromium"), RVS_REQUIRE_DATA="1")
    assert ci.returncode != 0 and "no-chromium" in ci.stdout and "a skip is a failure" in ci.stdout, ci.stdout[-2000:]


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_browser_deps_fails_under_ci_when_chromium_cannot_be_installed(tmp_path):
    """`make browser-deps` with neither chromium nor apt-get on PATH: a warning locally, an error in CI."""
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("cat", "sha256sum", "cut"):  # what the Makefile's variables need, nothing else
        if shutil.which(tool):
            (bare / tool).symlink_to(shutil.which(tool))
    env = {"PATH": str(bare), "HOME": str(tmp_path)}
    make = shutil.which("make")
    local = subprocess.run([make, "-s", "browser-deps"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert local.returncode == 0 and "warning: chromium could not be installed" in local.stdout
    ci = subprocess.run([make, "-s", "browser-deps"], cwd=ROOT, env={**env, "RVS_REQUIRE_DATA": "1"}, capture_output=True, text=True, timeout=60)
    assert ci.returncode != 0 and "error: chromium could not be installed and RVS_REQUIRE_DATA is set" in ci.stderr
