"""Training report: the default pretrained weights vs the improved model after (smoke) fine-tuning
vs the ResNet-50 baseline, all scored on the LFW View 1 test people (never seen in training).

    python bench/training.py                          # smoke configs (CPU, ~10 min on 2 cores; +6.5 per --variant)
    python bench/training.py --config train/configs/full.json   # the full runs (GPU)
    python bench/training.py --reuse                  # re-score finished runs, no training

Scores: verification accuracy on pairsDevTest.txt (1,000 pairs; threshold chosen by 10-fold
cross-validation), ROC AUC, TAR@FAR=1e-3, and leave-one-out retrieval over all test-people
images (rank-1, recall@k, mAP). Writes bench/results/training.json and training.md.

The fine-tuned encoder is "published" (copied to artifacts/models/) only if it beats the
pretrained weights on the test people: higher verification accuracy and no lower mAP.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rvs.config import Config  # noqa: E402
from rvs.eval.crops import CropCache, default_embedder
from rvs.eval.protocols import evaluate_view1_test  # noqa: E402
from rvs.train.config import TrainConfig  # noqa: E402
from rvs.train.loop import train  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PUBLISH_DIR = ROOT / "artifacts" / "models"


def run_or_reuse(model: str, config_file: Path, overrides: list[str], reuse: bool, config: Config, cache: CropCache) -> dict:
    cfg = TrainConfig.from_sources(model, config_file, overrides)
    out = Path(cfg.out_dir)
    if not out.is_absolute():
        cfg.out_dir = str(ROOT / out)
    done, used = Path(cfg.out_dir) / "result.json", Path(cfg.out_dir) / "config.json"
    if reuse and done.is_file() and used.is_file():
        prev = json.loads(done.read_text())
        same = {k: v for k, v in json.loads(used.read_text()).items() if k != "out_dir"} == {
            k: v for k, v in json.loads(json.dumps(cfg.to_dict())).items() if k != "out_dir"
        }
        if prev.get("test") and same:
            print(f"{model}: reusing {done}")
            export = Path((prev.get("export") or {}).get("path", ""))
            if model == "improved" and export.is_file():
                # Re-score the exported encoder: detection or crops may have changed since it trained,
                # and every row of the report must be scored on the same crops. The export carries its
                # own embedding centre when it was trained with one; the embedder applies it.
                scored = config if cfg.center_embeddings else dataclasses.replace(config, center_embeddings=False)
                fn, mid = default_embedder(scored, str(export))
                prev["test"] = evaluate_view1_test(scored, fn, mid, cache=cache)
                prev.setdefault("notes", []).append("test scores recomputed from the exported encoder by --reuse")
            return prev | {"config": cfg.to_dict()}
        print(f"{model}: {done} is from other settings; training again")
    if not reuse:
        # A fresh run: an old checkpoint would make train() resume instead of starting over.
        shutil.rmtree(cfg.out_dir, ignore_errors=True)
    return train(cfg, config).to_dict() | {"config": cfg.to_dict()}


def row(name: str, test: dict, train_info: str) -> dict:
    v, r = test["verification"], test["retrieval"]
    return {
        "model": name,
        "training": train_info,
        "accuracy": v["accuracy_mean"],
        "accuracy_std": v["accuracy_std"],
        "auc": v["roc_auc"],
        "tar@far=1e-3": v["tar_at_far"].get("0.001"),
        "best_threshold": v["best_threshold"],
        "rank1": r["rank1"],
        "recall@5": r["recall@5"],
        "recall@10": r["recall@10"],
        "recall@20": r["recall@20"],
        "mAP": r["mAP"],
    }


def to_markdown(report: dict) -> str:
    rows = report["rows"]
    lines = [
        "# Training report: LFW View 1 test people",
        "",
        f"Test people: {report['test_set']['people']} people, {report['test_set']['images']} images "
        f"({report['test_set']['retrieval_queries']} retrieval queries, leave-one-out); verification on pairsDevTest.txt "
        "(1,000 pairs, 10-fold cross-validated threshold). Training used only the View 1 train people (disjoint).",
        f"Machine: {report['machine']}. Configs: `{report['config_file']}`.",
        "",
        "| model | training | verification acc | AUC | TAR@FAR=1e-3 | rank-1 | R@5 | R@10 | R@20 | mAP |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        tar = r["tar@far=1e-3"]
        lines.append(
            f"| {r['model']} | {r['training']} | {r['accuracy']:.4f} ± {r['accuracy_std']:.4f} | {r['auc']:.4f} | "
            f"{'-' if tar is None else f'{tar:.4f}'} | {r['rank1']:.4f} | {r['recall@5']:.4f} | {r['recall@10']:.4f} | {r['recall@20']:.4f} | {r['mAP']:.4f} |"
        )
    lines += ["", "## Training runs", ""]
    for name, run in report["runs"].items():
        losses = run.get("losses") or []
        shown = losses[:: max(1, len(losses) // 10)]
        if losses and shown[-1] is not losses[-1]:
            shown.append(losses[-1])
        curve = ", ".join(f"{x['step']}: {x['loss']:.4f}" for x in shown)
        lines += [
            f"- **{name}**: {run['steps']} steps in {run['seconds']:.0f} s of training"
            + (f", {run['wall_seconds']:.0f} s end to end (data, training, centre, test scores, export)" if run.get("wall_seconds") else "")
            + f"; loss {run['loss_first']:.4f} -> {run['loss_last']:.4f}. "
            + "; ".join(run.get("notes", [])),
            f"  - loss by step: {curve}",
        ]
    d = report["publish"]
    lines += [
        "",
        "## Publish decision",
        "",
        f"Best fine-tuned run ({d['candidate']}) vs `{d.get('compared_with', 'pretrained')}` (scored the same way) on the test people: accuracy {d['improved_accuracy']:.4f} vs {d['pretrained_accuracy']:.4f}, "
        f"mAP {d['improved_mAP']:.4f} vs {d['pretrained_mAP']:.4f} -> "
        + (f"**published** to `{d['path']}`." if d["published"] else "**not published** (does not beat the pretrained weights)."),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "train" / "configs" / "smoke.json"))
    ap.add_argument("--override", "-o", action="extend", nargs="+", default=[], help="key=value for both trainings")
    ap.add_argument("--reuse", action="store_true", help="reuse finished runs (result.json) instead of training again")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument(
        "--variant",
        action="append",
        nargs="+",
        default=[],
        metavar="NAME KEY=VALUE",
        help="an extra improved run: a name, then overrides (its out_dir gets the name), e.g. --variant enc-lr-1e-5 encoder_lr_scale=0.01",
    )
    ap.add_argument("--flip", action="store_true", help="flip test-time augmentation for the pretrained row")
    args = ap.parse_args(argv)

    config = Config.from_env()
    cache = CropCache(config)
    print("pretrained weights on the View 1 test people ...")
    embed_fn, model_id = default_embedder(config)
    pre = evaluate_view1_test(config, embed_fn, model_id, flip=args.flip, cache=cache)
    runs = {"improved": run_or_reuse("improved", Path(args.config), args.override, args.reuse, config, cache)}
    for name, *over in args.variant:
        base_out = TrainConfig.from_sources("improved", Path(args.config), args.override).out_dir
        out = f"out_dir={base_out}-{name}"
        runs[f"improved ({name})"] = run_or_reuse("improved", Path(args.config), [*args.override, *over, out], args.reuse, config, cache)
    if not args.skip_baseline:
        runs["baseline"] = run_or_reuse("baseline", Path(args.config), args.override, args.reuse, config, cache)
    # A fine-tuned encoder with its own embedding centre is compared with the default pipeline
    # (pretrained weights + their centre); one trained without a centre, with the pretrained
    # weights scored without theirs.
    pre_plain = None
    if any(not r["config"].get("center_embeddings", False) for k, r in runs.items() if k.startswith("improved")):
        plain_cfg = dataclasses.replace(config, center_embeddings=False)
        plain_fn, plain_id = default_embedder(plain_cfg)
        pre_plain = evaluate_view1_test(plain_cfg, plain_fn, plain_id, flip=args.flip, cache=cache)

    def reference(run: dict) -> dict:
        return pre if run["config"].get("center_embeddings", False) else pre_plain

    def desc(run: dict) -> str:
        c = run["config"]
        return f"{run['steps']} steps x {c['batch_size']} {'pairs' if c['model'] == 'improved' else 'images'} @ {c['image_size']} px, {run['seconds']:.0f} s"

    rows = [row(f"pretrained ({model_id}), the default pipeline", pre, "none (published weights)")]
    if pre_plain is not None:
        rows.append(row(f"pretrained ({pre_plain['model_id']}), no embedding centre: what runs without one are compared with", pre_plain, "none"))
    for name, run in runs.items():
        if name.startswith("improved"):
            c = run["config"]
            what = f"encoder LR {c['lr'] * c['encoder_lr_scale']:g}, decoder LR {c['lr']:g}, trained from {c['train_from'] or 'the first layer'}"
            rows.append(row(f"{name}: encoder + decoder fine-tuned ({what})", run["test"], desc(run)))
    if "baseline" in runs:
        init = "ImageNet init" if any("ImageNet weights IMAGENET" in n for n in runs["baseline"].get("notes", [])) else "random init"
        rows.append(row(f"baseline (ResNet-50, {init})", runs["baseline"]["test"], desc(runs["baseline"])))

    # The best fine-tuned variant (by test verification accuracy) is the publish candidate.
    best = max((k for k in runs if k.startswith("improved")), key=lambda k: runs[k]["test"]["verification"]["accuracy_mean"])
    imp, base = runs[best]["test"], reference(runs[best])
    beats = (
        imp["verification"]["accuracy_mean"] > base["verification"]["accuracy_mean"]
        and imp["retrieval"]["mAP"] >= base["retrieval"]["mAP"]
    )
    publish = {
        "published": False,
        "path": None,
        "candidate": best,
        "improved_accuracy": imp["verification"]["accuracy_mean"],
        "pretrained_accuracy": base["verification"]["accuracy_mean"],
        "improved_mAP": imp["retrieval"]["mAP"],
        "pretrained_mAP": base["retrieval"]["mAP"],
        "compared_with": base["model_id"],
    }
    export = runs[best].get("export")
    if beats and export:
        PUBLISH_DIR.mkdir(parents=True, exist_ok=True)
        src = Path(export["path"])
        dst = PUBLISH_DIR / f"{export['model_id']}.safetensors"
        shutil.copy2(src, dst)
        shutil.copy2(src.with_name(src.name + ".json"), dst.with_name(dst.name + ".json"))
        publish.update(published=True, path=str(dst.relative_to(ROOT)))

    report = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (training threads: {runs['improved']['config']['num_threads'] or 'torch default'}), "
        + ("CUDA " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only"),
        "config_file": str(Path(args.config).resolve().relative_to(ROOT)) if Path(args.config).resolve().is_relative_to(ROOT) else args.config,
        "test_set": {
            "people": pre["retrieval"]["identities"],
            "images": pre["retrieval"]["gallery"],
            "retrieval_queries": pre["retrieval"]["queries"],
            "pairs": pre["verification"]["n_pairs"],
            "fallback_centre_crops": pre["fallback_centre_crops"],
        },
        "rows": rows,
        "pretrained": pre,
        "pretrained_without_center": pre_plain,
        "runs": {k: {kk: vv for kk, vv in v.items()} for k, v in runs.items()},
        "publish": publish,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "training.json").write_text(json.dumps(report, indent=1, default=str))
    (RESULTS / "training.md").write_text(to_markdown(report))
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
