"""Training data: LFW View 1 splits from the aligned-crop cache, pair/batch samplers, augmentation.

View 1 splits people, not images: peopleDevTrain.txt (4,038 people) for training and
peopleDevTest.txt (1,711 people) for testing, with no person in both, so test scores measure
faces the model never saw. Crops come from `rvs.eval.crops.CropCache`, the same MTCNN pass that
evaluation uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from rvs.config import Config
from rvs.errors import RvsError
from rvs.eval.crops import CropCache
from rvs.eval.protocols import people_images
from rvs.lfw.dataset import lfw_root, read_people


@dataclass
class Split:
    """Images of one set of people: crops N x 160 x 160 x 3 uint8, labels N (0..n_people-1)."""

    crops: np.ndarray
    labels: np.ndarray
    names: list[str]
    paths: list[str]

    @property
    def n_people(self) -> int:
        return len(self.names)

    def __len__(self) -> int:
        return len(self.labels)


def read_split_people(which: str, config: Config, limit_people: int = 0, seed: int = 0) -> dict[str, int]:
    """People of View 1 "train" or "test" (optionally a random subset of `limit_people`)."""
    f = lfw_root(config) / {"train": "peopleDevTrain.txt", "test": "peopleDevTest.txt"}[which]
    if not f.is_file():
        raise RvsError(f"{f}: not found (LFW View 1 lists; set RVS_DATA)")
    people = read_people(f)
    if limit_people and limit_people < len(people):
        # Keep the subset useful for pairs: prefer people with >= 2 images, then fill up.
        rng = np.random.default_rng(seed)
        names = sorted(people)
        multi = [n for n in names if people[n] >= 2]
        single = [n for n in names if people[n] < 2]
        rng.shuffle(multi)
        rng.shuffle(single)
        k = min(len(multi), max(limit_people // 2, 1))
        keep = multi[:k] + single[: limit_people - k]
        people = {n: people[n] for n in sorted(keep)}
    return people


def load_split(people: dict[str, int], config: Config, cache: CropCache | None = None, progress: bool = True) -> Split:
    paths, labels, names = people_images(people)
    crops = (cache or CropCache(config, progress=progress)).get(paths)
    return Split(crops.crops, labels, names, paths)


def check_disjoint(a: dict[str, int] | Split, b: dict[str, int] | Split) -> None:
    na = set(a.names) if isinstance(a, Split) else set(a)
    nb = set(b.names) if isinstance(b, Split) else set(b)
    both = na & nb
    if both:
        raise RvsError(f"train and test people overlap ({len(both)}, e.g. {sorted(both)[:3]})")


class PairSampler:
    """Batches of (image a, image b, same?) index pairs for the contrastive loss.

    LFW is very unbalanced (a few people have hundreds of photos, most have one), so pairs are
    drawn per person, not per image: a positive picks a person uniformly among those with at
    least two images, then two different images of theirs; a negative picks two different
    people uniformly among all people (singletons included), then one image of each. The
    generator state is JSON-able, so a resumed run continues the same sequence.
    """

    def __init__(self, labels: np.ndarray, batch_size: int, pos_fraction: float = 0.5, seed: int = 0):
        self.labels = np.asarray(labels)
        self.batch_size = batch_size
        self.n_pos = max(1, int(round(batch_size * pos_fraction)))
        self.by_person = [np.flatnonzero(self.labels == k) for k in range(int(self.labels.max()) + 1)]
        self.people = np.array([k for k, idx in enumerate(self.by_person) if len(idx) > 0])
        self.multi = np.array([k for k, idx in enumerate(self.by_person) if len(idx) >= 2])
        if len(self.multi) == 0:
            raise RvsError("no person has two images: cannot build positive pairs")
        if len(self.people) < 2:
            raise RvsError("need at least two people for negative pairs")
        self.rng = np.random.default_rng(seed)

    def sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(index a, index b, same 0/1 as float32), positives first."""
        a, b = [], []
        for k in self.rng.choice(self.multi, self.n_pos):
            i, j = self.rng.choice(self.by_person[k], 2, replace=False)
            a.append(i)
            b.append(j)
        for _ in range(self.batch_size - self.n_pos):
            p, q = self.rng.choice(self.people, 2, replace=False)
            a.append(self.rng.choice(self.by_person[p]))
            b.append(self.rng.choice(self.by_person[q]))
        same = np.zeros(self.batch_size, np.float32)
        same[: self.n_pos] = 1.0
        return np.array(a), np.array(b), same

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


class ImageSampler:
    """Batches of random image indices and their labels (the baseline's classification)."""

    def __init__(self, labels: np.ndarray, batch_size: int, seed: int = 0):
        self.labels = np.asarray(labels)
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        idx = self.rng.choice(len(self.labels), self.batch_size, replace=False)
        return idx, self.labels[idx]

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def to_input(crops: np.ndarray, size: int = 160) -> torch.Tensor:
    """uint8 N x H x W x 3 -> standardized float N x 3 x size x size (rvs.faces.embed.standardize)."""
    from rvs.faces.embed import standardize

    x = standardize(crops)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size)
    return x


def augment(x: torch.Tensor, gen: torch.Generator, flip: bool = True, jitter: int = 8) -> torch.Tensor:
    """Light augmentation of a standardized batch: random horizontal flip (p = 0.5) and a random
    shift of up to `jitter` pixels each way (reflect padding), i.e. small crop jitter. Kept
    light on purpose: the crops are already aligned, and the test crops are not augmented."""
    n, _, h, w = x.shape
    if flip:
        m = torch.rand(n, generator=gen) < 0.5
        x = torch.where(m[:, None, None, None], torch.flip(x, dims=[3]), x)
    if jitter > 0:
        p = F.pad(x, (jitter, jitter, jitter, jitter), mode="reflect")
        dx = torch.randint(0, 2 * jitter + 1, (n,), generator=gen).tolist()
        dy = torch.randint(0, 2 * jitter + 1, (n,), generator=gen).tolist()
        x = torch.stack([p[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    return x

