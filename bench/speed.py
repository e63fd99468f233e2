"""Per-photo speed of the face pipelines: detect + embed + search, single query and batched.

Pipelines, in one run on the same photos (so their ratios are fair):
- seed: MTCNN + FaceNet (the seed's pipeline, `--model facenet`);
- default: `Config.model` (MTCNN + the default embedder);
- each other registered model (MTCNN + SFace alone, ...).

Photos: 500 LFW photos (250 x 250, a random sample, seed 0) and 50 large photos (>= 1,000 px on
the long side): the 5 real large photos of ../shared/data/photos, and 45 made from LFW: four LFW
photos upscaled into a 2 x 2 grid of 1,200 x 1,200 px (four faces of 600 px each, as a group
photo from a phone would give), sample seed 1.

Single query: one photo at a time through `SearchEngine.search` (decode, detect, embed, search
a gallery of 2,000 LFW faces of the same model), p50/p95 ms. Batched: the embedding stage of a
gallery build (`detect_embed`, detection batches of `Config.detect_batch_size`), photos/s.
RSS: peak resident memory of a process that runs only that pipeline's queries (each pipeline
runs in its own process, one after the other, on the same photos, its gallery built before by
another process), MB.

Writes bench/results/speed.json; `default_vs_seed_pipeline_ratio` = single-query p50 of the
default pipeline over the seed's, on the LFW photos (the large photos' ratio beside it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import resource
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rvs.config import Config  # noqa: E402
from rvs.errors import RvsError  # noqa: E402
from rvs.faces.detect import FaceDetector  # noqa: E402
from rvs.faces.embedders import REGISTRY, create_embedder  # noqa: E402
from rvs.gallery.build import build_index  # noqa: E402
from rvs.gallery.embedding import detect_embed  # noqa: E402
from rvs.gallery.photos import Photo  # noqa: E402
from rvs.gallery.search import SearchEngine  # noqa: E402
from rvs.gallery.store import FaceIndex  # noqa: E402
from rvs.lfw.dataset import lfw_images_dir  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def rss_mb() -> float:
    """Peak resident memory of this process, MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def large_photos(cfg: Config, lfw: list[Path], out: Path, n: int = 50) -> list[Path]:
    real = sorted((cfg.data_dir / "photos").rglob("*.jpg"))
    real = [p for p in real if max(Image.open(p).size) >= 1000]
    rng = random.Random(1)
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(n - len(real)):
        four = rng.sample(lfw, 4)
        dst = out / f"grid-{i:02d}.jpg"
        if not dst.exists():  # the same photos in every pipeline's process
            canvas = Image.new("RGB", (1200, 1200))
            for j, p in enumerate(four):
                canvas.paste(Image.open(p).convert("RGB").resize((600, 600), Image.BICUBIC), ((j % 2) * 600, (j // 2) * 600))
            canvas.save(dst, quality=90)
        made.append(dst)
    return real + made


def measure(name: str, cfg: Config, small: list[Path], large: list[Path], gallery: Path, tmp: Path, log) -> dict:
    detector, embedder = FaceDetector(cfg), create_embedder(cfg)
    index = FaceIndex.load(tmp / f"gallery-{name}")  # built by another process (see main)
    engine = SearchEngine(index, cfg, detector=detector, embedder=embedder)
    engine.search(small[0], k=10)  # warm-up: first-call costs land in neither measurement
    out = {"model_id": embedder.model_id, "dim": embedder.spec.dim}
    for label, photos in (("lfw", small), ("large", large)):
        times, faces = [], 0
        for p in photos:
            t0 = time.perf_counter()
            try:
                faces += len(engine.search(p, k=10).faces)
            except RvsError:
                pass
            times.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        res, _, _ = detect_embed([Photo(str(p), "x", str(p)) for p in photos], cfg, detector, embedder, all_faces=True, progress=False)
        batched = time.perf_counter() - t0
        out[label] = {
            "photos": len(photos),
            "faces": faces,
            "single_ms_p50": float(np.percentile(times, 50)),
            "single_ms_p95": float(np.percentile(times, 95)),
            "batched_photos_per_s": len(photos) / batched,
            "batched_ms_per_photo": batched / len(photos) * 1e3,
            "batched_faces": int(sum(len(r.embeddings) for r in res)),
        }
        log(f"{name:8s} {label:5s}: single p50 {out[label]['single_ms_p50']:.0f} ms, p95 {out[label]['single_ms_p95']:.0f} ms; "
            f"batched {out[label]['batched_ms_per_photo']:.0f} ms/photo")
    out["rss_mb"] = rss_mb()
    return out


def photos(base: Config, work: Path, n_small: int, n_large: int) -> tuple[list[Path], list[Path], Path]:
    """The query photos and the 2,000-photo gallery (symlinks), the same for every pipeline."""
    root = lfw_images_dir(base)
    lfw = sorted(root.glob("*/*.jpg"))
    small = random.Random(0).sample(lfw, n_small)
    large = large_photos(base, lfw, work / "large", n_large)
    gallery = work / "gallery"
    if not gallery.exists():
        chosen = set(small)
        for p in random.Random(2).sample([p for p in lfw if p not in chosen], 2000):
            (gallery / p.parent.name).mkdir(parents=True, exist_ok=True)
            (gallery / p.parent.name / p.name).symlink_to(p)
    return small, large, gallery


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=500)
    ap.add_argument("--large", type=int, default=50)
    ap.add_argument("--out", type=Path, default=RESULTS / "speed.json")
    ap.add_argument("--pipeline", help=argparse.SUPPRESS)  # internal: run one pipeline in this process
    ap.add_argument("--build", help=argparse.SUPPRESS)  # internal: build one model's gallery in this process
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    base = Config.from_env()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.build:
        small, large, gallery = photos(base, args.work, args.small, args.large)
        build_index(gallery, args.work / f"gallery-{args.build}", dataclasses.replace(base, model=args.build), progress=False)
        return 0
    if args.pipeline:
        small, large, gallery = photos(base, args.work, args.small, args.large)
        r = measure(args.pipeline, dataclasses.replace(base, model=args.pipeline), small, large, gallery, args.work, log)
        args.out.write_text(json.dumps(r))
        return 0
    import subprocess
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="rvs-speed-"))
    photos(base, work, args.small, args.large)
    order = ["facenet", base.model, *[m for m in REGISTRY if m not in ("facenet", base.model)]]
    pipelines = {}
    for name in order:
        out = work / f"{name}.json"
        common = ["--work", str(work), "--out", str(out), "--small", str(args.small), "--large", str(args.large)]
        # The gallery is built in a process of its own: a process that has just embedded 2,000
        # photos with FaceNet searched 2x slower afterwards (detect 39 vs 19 ms, embed 61 vs 32 ms).
        subprocess.run([sys.executable, __file__, "--build", name, *common], check=True)
        subprocess.run([sys.executable, __file__, "--pipeline", name, *common], check=True)
        pipelines[name] = json.loads(out.read_text())
    seed, default = pipelines["facenet"], pipelines[base.model]
    res = {
        "what": "per photo: decode + detect (MTCNN) + embed + search (2,000-face gallery); see bench/speed.py docstring",
        "default_model": base.model,
        "default_vs_seed_pipeline_ratio": default["lfw"]["single_ms_p50"] / seed["lfw"]["single_ms_p50"],
        "default_vs_seed_large_ratio": default["large"]["single_ms_p50"] / seed["large"]["single_ms_p50"],
        "default_vs_seed_batched_ratio": default["lfw"]["batched_ms_per_photo"] / seed["lfw"]["batched_ms_per_photo"],
        "pipelines": {("seed (facenet)" if k == "facenet" else k): v for k, v in pipelines.items()},
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(f"\n{'pipeline':16s} {'LFW p50':>8s} {'p95':>6s} {'large p50':>9s} {'p95':>6s} {'batch ms':>8s} {'RSS MB':>7s}")
    for k, v in res["pipelines"].items():
        print(f"{k:16s} {v['lfw']['single_ms_p50']:8.0f} {v['lfw']['single_ms_p95']:6.0f} {v['large']['single_ms_p50']:9.0f} "
              f"{v['large']['single_ms_p95']:6.0f} {v['lfw']['batched_ms_per_photo']:8.1f} {v['rss_mb']:7.0f}")
    print(f"default ({base.model}) / seed, single-query p50: LFW {res['default_vs_seed_pipeline_ratio']:.2f}, large {res['default_vs_seed_large_ratio']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
