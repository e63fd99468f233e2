"""Load test of the demo: N concurrent gradio_client clients searching real LFW photos.

Starts `app.py` itself on 127.0.0.1 (with the gallery the app would pick: the full LFW index if
`make index` has been run, else the starter gallery, built once; or --gallery / --index-dir),
waits until it answers, then runs `--requests` image searches from `--clients` threads, each with
its own Client, and stops the server. Bounded: a fixed number of requests, a per-request timeout
and an overall deadline.

    python bench/load.py                      # 20 clients, 200 searches
    python bench/load.py --clients 5 --requests 40 --gallery /path/to/small/gallery

Reports p50/p95/max latency (client side: upload + queue + search + answer; result images are
not downloaded), errors, throughput, and the server's peak RSS (VmHWM from /proc) in a table and in
bench/results/load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

from rvs.config import Config  # noqa: E402
from rvs.lfw import list_images  # noqa: E402


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


def pick_queries(n: int, seed: int) -> list[tuple[str, Path]]:
    """n LFW photos of people with at least 4 photos (so most have gallery neighbours)."""
    lfw = Config.from_env().data_dir / "lfw" / "images_deepfunneled"
    people: dict[str, list[Path]] = {}
    for ident, p in list_images(lfw):
        people.setdefault(ident, []).append(p)
    pool = [(ident, p) for ident, ps in people.items() if len(ps) >= 4 for p in ps]
    rng = random.Random(seed)
    return [pool[rng.randrange(len(pool))] for _ in range(n)]


def run_clients(url: str, jobs: list[tuple[str, Path]], n_clients: int, timeout: float, deadline: float) -> list[dict]:
    from gradio_client import Client, handle_file

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
            rec: dict = {"identity": ident, "image": path.name}
            try:
                job = client.submit(handle_file(str(path)), "1 (largest)", 20, api_name="/search_image")
                _, gallery, _, data, _ = job.result(timeout=timeout)
                rec.update(ok=True, latency_s=time.perf_counter() - t0, n_results=len(gallery))
                rec["named"] = data["results"][0]["identification"]["identity"] if data.get("results") else None
                rec["server_ms"] = data.get("timings_ms", {}).get("total")
            except Exception as e:
                rec.update(ok=False, latency_s=time.perf_counter() - t0, error=f"{type(e).__name__}: {str(e)[:200]}")
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
    return xs[min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--gallery", help="photo folder for the app's starter gallery (app.py --gallery)")
    ap.add_argument("--index-dir", help="a local index for the app (RVS_INDEX_DIR)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    ap.add_argument("--deadline", type=float, default=900.0, help="seconds for the whole load phase")
    ap.add_argument("--startup-timeout", type=float, default=1500.0, help="seconds for the app to come up (first start builds the starter)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS / "load.json"))
    args = ap.parse_args()

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
    log_path = Path(tempfile.gettempdir()) / f"rvs-load-server-{os.getpid()}.log"
    jobs = pick_queries(args.requests, args.seed)
    print(f"starting the app on {url} (log: {log_path}) ...", flush=True)
    t_start = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(url, proc, t_start + args.startup_timeout)
            startup_s = time.time() - t_start
            rss_idle = proc_kib(proc.pid, "VmRSS")
            print(f"app up in {startup_s:.0f} s; {args.clients} clients x {args.requests} searches ...", flush=True)
            peak_rss = [rss_idle or 0]
            stop = threading.Event()

            def sample_rss() -> None:
                while not stop.wait(0.2):
                    v = proc_kib(proc.pid, "VmRSS")
                    if v:
                        peak_rss[0] = max(peak_rss[0], v)

            sampler = threading.Thread(target=sample_rss, daemon=True)
            sampler.start()
            t0 = time.perf_counter()
            recs = run_clients(url, jobs, args.clients, args.timeout, time.time() + args.deadline)
            wall = time.perf_counter() - t0
            stop.set()
            hwm = proc_kib(proc.pid, "VmHWM")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    gallery_line = next((ln.strip() for ln in log_path.read_text().splitlines() if "Gallery:" in ln), "")

    ok = [r for r in recs if r.get("ok")]
    lat = [r["latency_s"] for r in ok]
    server = [r["server_ms"] for r in ok if r.get("server_ms") is not None]
    errors = [r for r in recs if not r.get("ok")]
    agree = sum(1 for r in ok if r.get("named") == r.get("identity"))
    res = {
        "clients": args.clients,
        "requests": len(recs),
        "ok": len(ok),
        "errors": len(errors),
        "error_examples": sorted({r.get("error", "") for r in errors})[:5],
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(ok) / wall, 2) if wall > 0 else None,
        "latency_s": {
            "p50": round(pct(lat, 50), 3) if lat else None,
            "p95": round(pct(lat, 95), 3) if lat else None,
            "max": round(max(lat), 3) if lat else None,
            "mean": round(statistics.fmean(lat), 3) if lat else None,
        },
        "server_search_ms": {"p50": round(pct(server, 50), 1) if server else None, "p95": round(pct(server, 95), 1) if server else None},
        "named_true_identity": round(agree / len(ok), 3) if ok else None,
        "server_rss_mib": {
            "idle_after_start": round((rss_idle or 0) / 1024, 1),
            "peak_sampled": round(peak_rss[0] / 1024, 1),
            "peak_vmhwm": round(hwm / 1024, 1) if hwm else None,
        },
        "startup_s": round(startup_s, 1),
        "gallery": gallery_line.removeprefix("[rvs] "),
        "concurrency_limit": 2,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "notes": (
            "latency = client round trip incl. upload and queueing (20 clients share 2 worker slots); result images "
            "not downloaded. named_true_identity: share of answers naming the photo's true person; people not in "
            "the gallery (the starter holds the 300 most-photographed) are not named and count as misses"
        ),
    }
    Path(args.out).write_text(json.dumps(res, indent=1))

    rows = [
        ("clients x requests", f"{args.clients} x {len(recs)}"),
        ("ok / errors", f"{len(ok)} / {len(errors)}"),
        ("latency p50 / p95 / max", f"{res['latency_s']['p50']} / {res['latency_s']['p95']} / {res['latency_s']['max']} s"),
        ("server search p50 / p95", f"{res['server_search_ms']['p50']} / {res['server_search_ms']['p95']} ms"),
        ("throughput", f"{res['throughput_rps']} searches/s over {res['wall_s']} s"),
        ("server RSS idle / peak", f"{res['server_rss_mib']['idle_after_start']} / {res['server_rss_mib']['peak_vmhwm']} MiB"),
        ("named = true identity", f"{res['named_true_identity']}"),
        ("startup", f"{res['startup_s']} s"),
    ]
    w = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"  {k:<{w}}  {v}")
    print(f"  {res['gallery']}")
    if errors:
        print("  errors:", *res["error_examples"], sep="\n    ")
    print(f"\nwrote {args.out}")
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
