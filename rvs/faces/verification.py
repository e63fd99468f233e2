"""Same person or not? The calibrated 1:1 answer for two faces' embeddings.

In: the Euclidean distance between two unit embeddings of one model. Out: `Verdict`: the
probability that the two faces are the same person, and one of three answers:

- "same person" when the distance is at most `same_threshold`: where the calibrated probability
  is 95% and at most 1% of LFW's different-person pairs fall (held-out folds say what it really
  lets through: `far_at_same`);
- "different people" when the distance is at least `different_threshold`: where the probability
  of different people is 95% and at most 1% of same-person pairs lie beyond (`frr_at_different`);
- "unsure" in between.

The probability is a logistic curve in the distance, P(same) = 1 / (1 + exp(-(a + b d))),
fitted on LFW pairs.txt (6,000 pairs, half same) with the other 9 folds for each fold; its
calibration error is measured on the held-out folds (`ece`). LFW pairs are half same-person: the
probability is "of two photos like LFW's pairs", a prior of 1/2, not of two random people.

The numbers per model live in `rvs/data/verification/<model id>.json`, written by
`python -m rvs calibrate --verification` (rvs.eval.verification).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "verification"
ANSWERS = ("same person", "unsure", "different people")


@dataclass(frozen=True)
class Verdict:
    distance: float
    probability: float  # P(same person), calibrated on LFW pairs
    answer: str  # one of ANSWERS

    def to_dict(self) -> dict:
        return {"distance": round(self.distance, 4), "same_person_probability": round(self.probability, 4), "answer": self.answer}


@dataclass(frozen=True)
class VerificationCalibration:
    model_id: str
    a: float
    b: float
    same_threshold: float
    different_threshold: float
    far_at_same: float  # held-out share of different-person pairs at or below same_threshold
    frr_at_different: float  # held-out share of same-person pairs at or above different_threshold
    ece: float  # held-out expected calibration error of the probability
    accuracy: float  # held-out LFW pairs accuracy at the accuracy-optimal distance
    pairs: int

    def probability(self, distance: float) -> float:
        z = self.a + self.b * float(distance)
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    def verdict(self, distance: float) -> Verdict:
        d = float(distance)
        answer = "same person" if d <= self.same_threshold else "different people" if d >= self.different_threshold else "unsure"
        return Verdict(d, self.probability(d), answer)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def calibration_file(model_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_.[]|" else "_" for c in model_id).replace("|", "_").replace("[", "_").replace("]", "_")
    return DATA / f"{safe}.json"


def load_calibration(model_id: str) -> VerificationCalibration | None:
    """The shipped 1:1 calibration of a model, or None when there is none (or it is unreadable)."""
    p = calibration_file(model_id)
    try:
        d = json.loads(p.read_text())
        cal = VerificationCalibration(**{k: d[k] for k in VerificationCalibration.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return cal if cal.model_id == model_id else None
