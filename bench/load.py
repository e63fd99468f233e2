"""Load test of the demo under hostile and long work: real gradio_client clients, real photos.

Starts `app.py` itself on 127.0.0.1 (with the gallery the app would pick: the full LFW index if
`make index` has been run, else the starter gallery; or --gallery / --index-dir), waits until it
answers, then, each phase bounded in requests and time:

1. concurrency: image searches/s with 1 client, then with 4 (`throughput_ratio_4_vs_1`; the naive
   way, every request with all torch threads and no budget, degraded to seconds per image);
2. load: `--clients` clients x `--requests` searches of LFW photos, plus bad inputs (not an image,
   a truncated JPEG, a server path) that must fail with their one-line message: counted apart
   as `expected_errors`; `errors` are the unexpected failures;
3. mixed: two long person-mode searches of a synthetic 4-minute 360p video run while 8 clients
   search photos for `--mixed-seconds`: `mixed.image_p95_seconds` (was 198 s before the video
   queue and CPU budget);
4. cancel: a long video search is cancelled once it computes; `cancel.stop_seconds` is the time
   from cancel until the server process's CPU use falls to idle;
5. memory: `rss_growth_mb`, the server's RSS after the run settles minus after warm-up.

    python bench/load.py                      # ~6 min on 2 cores
    python bench/load.py --clients 5 --requests 40 --gallery /path/to/small/gallery

Prints a table and writes bench/results/load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

from rvs.config import Config  # noqa: E402
from rvs.gallery.photos import list_images  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_kib(pid: int, field: str) -> int | None:
    """A memory field (VmRSS, VmHWM) of /proc/<pid>/status in KiB, or None if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def wait_ready(url: str, proc: subprocess.Popen, deadline: float) -> None:
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with code {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url + "gradio_api/info", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(2)
    raise TimeoutError("the app did not come up in time (a first start builds the starter gallery: rerun with a larger --startup-timeout)")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def watch_cpu(pid: int, interval: float, timeout: float, until: Callable[[float, float], bool]) -> float | None:
    """Sample a process's CPU use (in cores) every `interval` s; the time at which
    `until(rate, now)` first holds, or None after `timeout` s."""
    t_end = time.time() + timeout
    prev, t_prev = cpu_seconds(pid), time.time()
    while time.time() < t_end:
        time.sleep(interval)
        cur, now = cpu_seconds(pid), time.time()
        rate = (cur - prev) / (now - t_prev)
        prev, t_prev = cur, now
        if until(rate, now):
            return now
    return None


def pick_queries(n: int, seed: int) -> list[tuple[str, Path]]:
    """n LFW photos of people with at least 4 photos (so most have gallery neighbours)."""
    lfw = Config.from_env().data_dir / "lfw" / "images_deepfunneled"
    people: dict[str, list[Path]] = {}
    for ident, p in list_images(lfw):
        people.setdefault(ident, []).append(p)
    pool = [(ident, p) for ident, ps in people.items() if len(ps) >= 4 for p in ps]
    rng = random.Random(seed)
    return [pool[rng.randrange(len(pool))] for _ in range(n)]


def run_clients(url: str, jobs: list[tuple[str, Path]], n_clients: int, timeout: float, deadline: float, expect: dict | None = None) -> list[dict]:
    """Run `jobs` (identity, photo) from n_clients threads, each with its own Client. `expect`
    maps a photo to the message its error must contain (bad inputs sent on purpose)."""
    from gradio_client import Client, handle_file

    expect = expect or {}
    todo: queue.Queue = queue.Queue()
    for j in jobs:
        todo.put(j)
    out: list[dict] = []
    lock = threading.Lock()

    def worker(w: int) -> None:
        try:
            client = Client(url, verbose=False, download_files=False)
        except Exception as e:  # count the jobs this client would have run as errors, then stop
            with lock:
                out.append({"ok": False, "error": f"client {w}: {type(e).__name__}: {e}", "latency_s": None})
            return
        while time.time() < deadline:
            try:
                ident, path = todo.get_nowait()
            except queue.Empty:
                return
            t0 = time.perf_counter()
            rec: dict = {"identity": ident, "image": Path(path).name}
            try:
                arg = {"path": str(path)} if str(path).startswith("/etc") else handle_file(str(path))
                job = client.submit(arg, "1 (largest)", 20, api_name="/search_image")
                _, gallery, _, data, _ = job.result(timeout=timeout)
                rec.update(ok=True, latency_s=time.perf_counter() - t0, n_results=len(gallery))
                rec["named"] = data["results"][0]["identification"]["identity"] if data.get("results") else None
                rec["server_ms"] = data.get("timings_ms", {}).get("total")
                if str(path) in expect:
                    rec.update(ok=False, error=f"{path} was accepted, expected: {expect[str(path)]}")
            except Exception as e:
                msg = f"{type(e).__name__}: {str(e)[:200]}"
                want = expect.get(str(path))
                rec.update(ok=False, latency_s=time.perf_counter() - t0, error=msg, expected=bool(want and want in str(e)))
            with lock:
                out.append(rec)

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, deadline - time.time()))
    # Jobs never started (deadline hit) count as errors: the run must not look better than it was.
    missing = len(jobs) - len(out)
    out.extend({"ok": False, "error": "not run before the deadline", "latency_s": None} for _ in range(max(0, missing)))
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))] if xs else float("nan")


def bad_inputs(folder: Path) -> dict[str, str]:
    """Files a hostile or careless client sends, with the message each must get."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.jpg").write_text("not a picture")
    good = next(iter(pick_queries(1, 99)))[1].read_bytes()
    (folder / "cut.jpg").write_bytes(good[: len(good) // 3])
    return {
        str(folder / "notes.jpg"): "not an image",
        str(folder / "cut.jpg"): "corrupt or truncated",
        "/etc/passwd": "not uploaded to this app",
    }


def long_video(path: Path, seconds: int = 240, fps: int = 10) -> Path:
    """A slow pan over a photo of six faces, 640x360: person mode works on it for minutes."""
    if path.is_file():
        return path
    from rvs.video.synth import load_rgb, pan, write_video

    photo = load_rgb(Config.from_env().data_dir / "photos" / "multiface.jpg")
    tmp = path.with_suffix(".tmp.mp4")
    write_video(tmp, [pan(photo, (0.3, 0.5, 0.8), (0.7, 0.5, 0.8), seconds * fps, "pan")], size=(640, 360), fps=fps)
    tmp.replace(path)
    return path


def measure_throughput(url: str, clients: int, n: int, timeout: float) -> float:
    """Searches per second over wall time with `clients` clients in parallel."""
    t0 = time.perf_counter()
    recs = run_clients(url, pick_queries(n, 1000 + clients), clients, timeout, time.time() + 600)
    wall = time.perf_counter() - t0
    return sum(1 for r in recs if r.get("ok")) / wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--gallery", help="photo folder for the app's starter gallery (app.py --gallery)")
    ap.add_argument("--index-dir", help="a local index for the app (RVS_INDEX_DIR)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    ap.add_argument("--deadline", type=float, default=900.0, help="seconds for the load phase")
    ap.add_argument("--mixed-seconds", type=float, default=60.0, help="seconds of image searches while the videos run")
    ap.add_argument("--startup-timeout", type=float, default=1500.0, help="seconds for the app to come up (first start builds the starter)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS / "load.json"))
    args = ap.parse_args()

    from gradio_client import Client, handle_file

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    env.pop("GRADIO_SERVER_NAME", None)
    if args.index_dir:
        env["RVS_INDEX_DIR"] = args.index_dir
    cmd = [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port)]
    if args.gallery:
        cmd += ["--gallery", args.gallery]
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.gettempdir()) / "rvs-load"
    work.mkdir(exist_ok=True)
    print("preparing inputs (a 4-minute test video, bad files) ...", flush=True)
    video = long_video(work / "long-240s-360p.mp4")
    vquery = next(iter(pick_queries(1, 7)))[1]
    expect = bad_inputs(work / "bad")
    jobs = pick_queries(args.requests, args.seed) + [("bad", Path(p)) for p in expect] * 2
    random.Random(args.seed).shuffle(jobs)
    log_path = work / f"server-{os.getpid()}.log"
    print(f"starting the app on {url} (log: {log_path}) ...", flush=True)
    t_start = time.time()
    res: dict = {}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(url, proc, t_start + args.startup_timeout)
            startup_s = time.time() - t_start
            run_clients(url, pick_queries(4, 3), 1, args.timeout, time.time() + 120)  # warm-up
            rss_before = proc_kib(proc.pid, "VmRSS") or 0
            peak = [rss_before]
            stop = threading.Event()

            def sample_rss() -> None:
                while not stop.wait(0.2):
                    peak[0] = max(peak[0], proc_kib(proc.pid, "VmRSS") or 0)

            threading.Thread(target=sample_rss, daemon=True).start()

            print("1/5 concurrency: 1 client vs 4 ...", flush=True)
            rps1 = measure_throughput(url, 1, 24, args.timeout)
            rps4 = measure_throughput(url, 4, 48, args.timeout)
            res["concurrency"] = {"rps_1_client": round(rps1, 2), "rps_4_clients": round(rps4, 2), "throughput_ratio_4_vs_1": round(rps4 / rps1, 3)}

            print(f"2/5 load: {args.clients} clients x {len(jobs)} searches ({2 * len(expect)} bad inputs) ...", flush=True)
            t0 = time.perf_counter()
            recs = run_clients(url, jobs, args.clients, args.timeout, time.time() + args.deadline, expect)
            wall = time.perf_counter() - t0

            print(f"3/5 mixed: two 4-minute person searches + 8 clients for {args.mixed_seconds:.0f} s ...", flush=True)
            vclients = [Client(url, verbose=False, download_files=False) for _ in range(2)]
            vjobs = [c.submit(handle_file(str(video)), handle_file(str(vquery)), "face", api_name="/search_video") for c in vclients]
            time.sleep(5)
            n_mixed = int(args.mixed_seconds * 4)
            t_mixed = time.time()
            mixed = run_clients(url, pick_queries(n_mixed, 5), 8, args.timeout, t_mixed + args.mixed_seconds)
            mixed_ok = [r["latency_s"] for r in mixed if r.get("ok")]
            mixed_done_in_time = [r for r in mixed if r.get("ok")]
            videos_running = sum(1 for j in vjobs if not j.done())
            for j in vjobs:
                j.cancel()
            res["mixed"] = {
                "image_searches": len(mixed_done_in_time),
                "image_p50_seconds": round(pct(mixed_ok, 50), 3),
                "image_p95_seconds": round(pct(mixed_ok, 95), 3),
                "image_errors": sum(1 for r in mixed if not r.get("ok") and r.get("error") != "not run before the deadline"),
                "video_searches_still_running_at_end": videos_running,
            }

            print("4/5 cancel ...", flush=True)
            time.sleep(3)
            c = Client(url, verbose=False, download_files=False)
            job = c.submit(handle_file(str(video)), handle_file(str(vquery)), "face", api_name="/search_video")
            # Wait until the server computes (a core busy for 3 s), then cancel.
            busy_since: list[float] = []

            def busy_for_3s(rate: float, now: float) -> bool:
                if rate > 0.5 and not busy_since:
                    busy_since.append(now)
                return bool(busy_since) and now - busy_since[0] > 3

            watch_cpu(proc.pid, 0.5, 120, busy_for_3s)
            t_cancel = time.time()
            job.cancel()
            # Idle: Gradio's own housekeeping stays well below 0.15 of a core.
            t_idle = watch_cpu(proc.pid, 0.25, 60, lambda rate, now: rate < 0.15)
            stop_s = t_idle - t_cancel if t_idle is not None else None
            res["cancel"] = {"stop_seconds": round(stop_s, 2) if stop_s is not None else None, "cpu_idle_below_core_share": 0.15}

            print("5/5 memory: settling ...", flush=True)
            time.sleep(10)
            rss_after = proc_kib(proc.pid, "VmRSS") or 0
            stop.set()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    gallery_line = next((ln.strip() for ln in log_path.read_text().splitlines() if "Gallery:" in ln), "")
    tracebacks = log_path.read_text().count("Traceback")

    ok = [r for r in recs if r.get("ok")]
    lat = [r["latency_s"] for r in ok]
    server = [r["server_ms"] for r in ok if r.get("server_ms") is not None]
    expected = [r for r in recs if not r.get("ok") and r.get("expected")]
    errors = [r for r in recs if not r.get("ok") and not r.get("expected")]
    agree = sum(1 for r in ok if r.get("named") == r.get("identity"))
    res = {
        "clients": args.clients,
        "requests": len(recs),
        "ok": len(ok),
        "errors": len(errors),
        "expected_errors": len(expected),
        "error_examples": sorted({r.get("error", "") for r in errors})[:5],
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(ok) / wall, 2) if wall > 0 else None,
        "latency_s": {"p50": round(pct(lat, 50), 3), "p95": round(pct(lat, 95), 3), "max": round(max(lat), 3) if lat else None},
        "server_search_ms": {"p50": round(pct(server, 50), 1), "p95": round(pct(server, 95), 1)},
        **res,
        "named_true_identity": round(agree / len(ok), 3) if ok else None,
        "rss_before_mb": round(rss_before / 1024, 1),
        "rss_after_mb": round(rss_after / 1024, 1),
        "rss_peak_mb": round(peak[0] / 1024, 1),
        "rss_growth_mb": round((rss_after - rss_before) / 1024, 1),
        "server_log_tracebacks": tracebacks,
        "startup_s": round(startup_s, 1),
        "gallery": gallery_line.removeprefix("[rvs] "),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(), "load_avg_end": os.getloadavg()[0]},
        "notes": (
            "latency = client round trip incl. upload and queueing; result images not downloaded. expected_errors: bad "
            "inputs sent on purpose that got their one-line message. named_true_identity: share of answers naming the "
            "photo's person (people not in the gallery are not named and count as misses)"
        ),
    }
    Path(args.out).write_text(json.dumps(res, indent=1))
    rows = [
        ("clients x requests", f"{args.clients} x {len(recs)}"),
        ("ok / errors / expected errors", f"{len(ok)} / {len(errors)} / {len(expected)}"),
        ("latency p50 / p95 / max", f"{res['latency_s']['p50']} / {res['latency_s']['p95']} / {res['latency_s']['max']} s"),
        ("throughput 1 client / 4 clients", f"{res['concurrency']['rps_1_client']} / {res['concurrency']['rps_4_clients']} searches/s (ratio {res['concurrency']['throughput_ratio_4_vs_1']})"),
        ("mixed: image p50 / p95 with 2 videos", f"{res['mixed']['image_p50_seconds']} / {res['mixed']['image_p95_seconds']} s ({res['mixed']['image_searches']} searches)"),
        ("cancel: CPU idle after", f"{res['cancel']['stop_seconds']} s"),
        ("RSS before / after / growth", f"{res['rss_before_mb']} / {res['rss_after_mb']} / {res['rss_growth_mb']} MB"),
        ("tracebacks in the server log", f"{tracebacks}"),
        ("startup", f"{res['startup_s']} s"),
    ]
    w = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"  {k:<{w}}  {v}")
    print(f"wrote {args.out}")
    return 0 if not errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
