"""`python -m rvs lfw download` against a small LFW mirror on 127.0.0.1: the real protocol lists
(their pinned digests), an archive of a few real LFW photos, an interrupted download resumed with
a Range request, a tampered list refused, and an unreachable server named in one line."""

from __future__ import annotations

import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import LFW, requires_data

from rvs.errors import RvsError
from rvs.lfw.dataset import read_pairs
from rvs.lfw.download import ARCHIVE, IMAGES_DIR, PROTOCOL_FILES, download_lfw

pytestmark = requires_data

PEOPLE = {"Aaron_Sorkin": 2, "Abdoulaye_Wade": 4, "Colin_Powell": 3}


def make_archive() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, n in PEOPLE.items():
            for i in range(1, n + 1):
                src = LFW / name / f"{name}_{i:04d}.jpg"
                t.add(src, arcname=f"lfw-deepfunneled/{name}/{src.name}")
    return buf.getvalue()


class Mirror:
    """Static files over HTTP with Range support; `cut_after` bytes of the archive, then a dropped
    connection, on the first archive request only (a flaky network)."""

    def __init__(self, files: dict[str, bytes], cut_after: int | None = None):
        self.files, self.cut_after, self.requests = files, cut_after, []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep test output clean
                pass

            def do_GET(self):
                name = self.path.lstrip("/").split("/", 1)[-1]
                mirror.requests.append((name, self.headers.get("Range")))
                body = mirror.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                data = body[start:]
                if name == ARCHIVE and mirror.cut_after is not None:
                    self.wfile.write(data[: mirror.cut_after])
                    mirror.cut_after = None
                    self.close_connection = True
                    return
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/lfw"

    def __enter__(self) -> Mirror:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def mirror_files(archive: bytes) -> dict[str, bytes]:
    return {ARCHIVE: archive, **{name: (LFW.parent / name).read_bytes() for name in PROTOCOL_FILES}}


def test_download_resume_verify_and_reuse(tmp_path, monkeypatch):
    monkeypatch.setattr("rvs.lfw.download.CHUNK", 4096)  # the test archive is only ~70 kB
    archive = make_archive()
    dest = tmp_path / "lfw"
    with Mirror(mirror_files(archive), cut_after=len(archive) // 3) as m:
        with pytest.raises(RvsError, match="rerun to resume"):
            download_lfw(dest, m.url, progress=False, expect=(3, 9))
        # The lists are in place and verified; the images folder does not exist half-made.
        assert (dest / "pairs.txt").read_bytes() == (LFW.parent / "pairs.txt").read_bytes()
        assert not (dest / IMAGES_DIR).exists()
        kept = (dest / f".{ARCHIVE}.part").stat().st_size
        assert 0 < kept < len(archive)

        m.requests.clear()
        done = download_lfw(dest, m.url, progress=False, expect=(3, 9))
        assert m.requests == [(ARCHIVE, f"bytes={kept}-")]  # the lists are not fetched again
        assert done[IMAGES_DIR] and not done["pairs.txt"]
        for name, n in PEOPLE.items():
            for i in range(1, n + 1):
                rel = f"{name}/{name}_{i:04d}.jpg"
                assert (dest / IMAGES_DIR / rel).read_bytes() == (LFW / rel).read_bytes()
        assert not list(dest.glob(".*"))  # no partial files or unpack folders left
        assert len(read_pairs(dest / "pairs.txt")) == 6000

        m.requests.clear()
        assert not any(download_lfw(dest, m.url, progress=False, expect=(3, 9)).values())
        assert m.requests == []


def test_tampered_list_and_wrong_archive_are_refused(tmp_path):
    files = mirror_files(make_archive())
    files["pairsDevTest.txt"] = files["pairsDevTest.txt"].replace(b"Abdullah_Gul", b"Abdullah_Gux", 1)
    with Mirror(files) as m:
        with pytest.raises(RvsError, match=r"pairsDevTest.txt: sha256 .* is not the published"):
            download_lfw(tmp_path / "a", m.url, progress=False, expect=(3, 9))
        assert not (tmp_path / "a" / "pairsDevTest.txt").exists()
        # An archive that does not unpack to the expected people/images is not put in place.
        with pytest.raises(RvsError, match=r"unpacked 3 people / 9 images, expected 5749 / 13233"):
            download_lfw(tmp_path / "b", m.url, progress=False, protocol_files={})
        assert not (tmp_path / "b" / IMAGES_DIR).exists()


def test_unreachable_mirror_is_one_clear_error(tmp_path, capsys):
    from rvs.cli import main

    with Mirror({}) as m:
        url = m.url
    rc = main(["lfw", "download", "--dest", str(tmp_path / "lfw"), "--url", url, "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith(f"error: cannot download {url}/pairs.txt") and "\n" not in err


def test_cli_reports_what_it_fetched(tmp_path, capsys):
    from rvs.cli import main

    with Mirror(mirror_files(make_archive())) as m, pytest.MonkeyPatch.context() as mp:
        mp.setattr("rvs.lfw.download.LFW_PEOPLE", 3)  # the mirror's small archive
        mp.setattr("rvs.lfw.download.LFW_IMAGES", 9)
        assert main(["lfw", "download", "--dest", str(tmp_path / "lfw"), "--url", m.url, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"LFW ready in {tmp_path / 'lfw'}" in out and IMAGES_DIR in out and "RVS_DATA=" in out
    assert Path(tmp_path / "lfw" / IMAGES_DIR / "Colin_Powell" / "Colin_Powell_0003.jpg").is_file()
