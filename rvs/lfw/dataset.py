"""LFW: image lists and the standard protocols (View 1 people/pairs, View 2 pairs.txt).

Works on any folder-per-person tree laid out like LFW (`<root>/<Name>/<Name>_NNNN.jpg`).
Fetching LFW onto a fresh machine: `rvs.lfw.download` (`python -m rvs lfw download`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rvs.config import Config


def lfw_root(config: Config | None = None) -> Path:
    """The LFW folder: `<data_dir>/lfw` (holds images_deepfunneled/ and the protocol files)."""
    return Path((config or Config()).data_dir) / "lfw"


def lfw_images_dir(config: Config | None = None) -> Path:
    return lfw_root(config) / "images_deepfunneled"


def image_path(images_dir: Path, name: str, num: int) -> Path:
    return images_dir / name / f"{name}_{num:04d}.jpg"




@dataclass(frozen=True)
class Pair:
    name1: str
    num1: int
    name2: str
    num2: int
    fold: int

    @property
    def same(self) -> bool:
        return self.name1 == self.name2


def read_pairs(path: str | Path) -> list[Pair]:
    """Parse `pairs.txt` (View 2: header "10 300", 10 folds of 300 same + 300 different pairs)
    or `pairsDev*.txt` (View 1: header N, N same then N different pairs; fold 0)."""
    lines = [ln.split() for ln in Path(path).read_text().splitlines() if ln.strip()]
    header, rows = lines[0], lines[1:]
    if len(header) == 2:
        n_folds, n = int(header[0]), int(header[1])
    else:
        n_folds, n = 1, int(header[0])
    pairs = []
    for i, r in enumerate(rows):
        fold = i // (2 * n)
        if len(r) == 3:
            pairs.append(Pair(r[0], int(r[1]), r[0], int(r[2]), fold))
        elif len(r) == 4:
            pairs.append(Pair(r[0], int(r[1]), r[2], int(r[3]), fold))
        else:
            raise ValueError(f"{path}: bad line {i + 2}: {' '.join(r)}")
    if len(pairs) != n_folds * 2 * n:
        raise ValueError(f"{path}: expected {n_folds * 2 * n} pairs, read {len(pairs)}")
    return pairs


def read_people(path: str | Path) -> dict[str, int]:
    """Parse `peopleDevTrain.txt` / `peopleDevTest.txt` (header N, then "Name count")."""
    lines = [ln.split() for ln in Path(path).read_text().splitlines() if ln.strip()]
    out: dict[str, int] = {}
    for r in lines[1:]:
        if len(r) == 2:
            out[r[0]] = int(r[1])
    return out
