"""`python -m rvs push --repo OWNER/NAME`: publish weights + gallery index to the Hugging Face Hub.

Exports an artifact folder (see rvs.hub.client) from `--weights` and `--index`, then uploads it in one
commit. `--export-only OUT` writes the folder and stops (inspect it, or upload it yourself).
The token comes from HF_TOKEN (or huggingface_hub's stored login); HF_ENDPOINT is honoured.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from rvs.config import Config
from rvs.errors import BadInputError


def register(sub) -> None:
    p = sub.add_parser("push", help="publish weights + gallery index to a Hugging Face Hub model repo")
    p.add_argument("--repo", help="Hub repo id OWNER/NAME (required unless --export-only)")
    p.add_argument("--index", help="index folder to publish (default: Config.index_dir, RVS_INDEX_DIR)")
    p.add_argument("--weights", help="weights the index was built with (default: casia-webface, RVS_WEIGHTS)")
    p.add_argument("--revision", default="main", help="branch to commit to, created if missing (default: main)")
    p.add_argument("--private", action="store_true", help="create the repo private (no effect on an existing repo)")
    p.add_argument("--message", help="commit message")
    p.add_argument("--eval-json", help="evaluation numbers for the model card: `python -m rvs eval --json` output or a {metric: value} JSON file")
    p.add_argument("--gallery-description", help="one paragraph on what the gallery is, for the model card")
    p.add_argument("--export-only", metavar="OUT", help="only write the artifact folder to OUT; upload nothing")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def _evaluation(path: str | None) -> dict:
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise BadInputError(f"{path}: cannot read evaluation JSON ({e})") from None
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: evaluation JSON must be an object ({{metric: value}} or `python -m rvs eval --json` output)")
    from rvs.hub.modelcard import evaluation_table

    return evaluation_table(data)


def run(args: argparse.Namespace) -> int:
    from rvs.hub.artifacts import verify_artifact_folder
    from rvs.hub.publish import export_artifacts, push_artifacts

    if not args.repo and not args.export_only:
        raise BadInputError("push needs --repo OWNER/NAME (or --export-only OUT to only write the folder)")
    if args.repo and args.repo.count("/") != 1:
        raise BadInputError(f"--repo {args.repo!r}: expected OWNER/NAME")
    cfg = Config.from_env(**({"weights": args.weights} if args.weights else {}))
    card = {"repo_id": args.repo or "OWNER/NAME", "evaluation": _evaluation(args.eval_json)}
    if args.gallery_description:
        card["gallery_description"] = args.gallery_description
    index_dir = Path(args.index) if args.index else cfg.index_dir

    summary: dict = {"repo": args.repo, "revision": args.revision, "index": str(index_dir), "weights": cfg.weights}
    with tempfile.TemporaryDirectory(prefix="rvs-push-") as tmp:
        out = Path(args.export_only) if args.export_only else Path(tmp) / "artifacts"
        folder = export_artifacts(out, cfg.weights, index_dir, cfg, card)
        arts = verify_artifact_folder(folder)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        summary.update(model_id=arts.model_id, faces=arts.gallery_size, identities=arts.n_identities, bytes=size, folder=str(folder))
        if not args.export_only:
            info = push_artifacts(folder, args.repo, revision=args.revision, private=args.private, commit_message=args.message)
            summary.update(commit=info.oid, commit_url=info.commit_url, folder=None)

    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    what = f"{summary['faces']:,} faces of {summary['identities']:,} identities, model {summary['model_id']}, {size / 1e6:.1f} MB"
    if args.export_only:
        print(f"exported artifact folder {summary['folder']} ({what})")
        if args.repo:
            print(f"  upload it with: python -m rvs push --repo {args.repo} --index {index_dir}")
    else:
        print(f"pushed {args.repo}@{args.revision} (commit {summary['commit'][:7]}): {what}")
        print(f"  {summary['commit_url']}")
        print(f"  use it: RVS_HUB_REPO={args.repo} RVS_HUB_REVISION={summary['commit']} python app.py")
    return 0
