"""Train the improved model (InceptionResnetV1 encoder + decoder, contrastive + consistency).

    python train/train_improved.py --config train/configs/smoke.json [--override key=value ...]

Same as `python -m rvs train improved ...`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from rvs.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(["train", "improved", *sys.argv[1:]]))
