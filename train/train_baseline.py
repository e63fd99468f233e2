"""Train the baseline (ResNet-50 + two fully connected layers, cross-entropy over identities).

    python train/train_baseline.py --config train/configs/smoke.json [--override key=value ...]

Same as `python -m rvs train baseline ...`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from rvs.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(["train", "baseline", *sys.argv[1:]]))
