"""Open-set calibration of a gallery: who gets a name is fitted on the gallery that answers
(`rvs.gallery.identify.calibrate`), stored in its manifest, and refitted whenever the gallery
changes or comes from elsewhere (`ensure_calibrated`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from rvs.config import Config
from rvs.gallery.identify import OpenSetModel, Reference, calibrate
from rvs.gallery.store import FaceIndex

log = logging.getLogger(__name__)


def ensure_calibrated(index: FaceIndex, config: Config, save_to: str | Path | None = None, trust: bool = True) -> bool:
    """Calibrate an index whose open-set model is missing, of an older method or malformed (built
    before calibration existed, or by another rvs version), and save it when `save_to` is given.
    trust=False (a downloaded artifact): recalibrate from its verified embeddings whatever it
    says, so a publisher cannot ship a threshold that names everyone. True if it changed."""
    info = index.extra.get("open_set")
    if trust and info is not None:
        try:
            OpenSetModel.from_dict(info)
            return False
        except (TypeError, ValueError):
            pass
    log.info("calibrating open-set identification for a gallery of %d faces", len(index))
    calibrate_index(index, config)
    if save_to is not None and "open_set" in index.extra:
        index.save(save_to)
    return True


def calibrate_index(index: FaceIndex, config: Config, reference: Reference | None = None) -> dict | None:
    """Fit the gallery's open-set model (rvs.gallery.identify.calibrate) and store it, with how it was
    obtained, in `index.extra["open_set"]` (saved into the manifest). Uses the reference set
    shipped for the index's model when there is one. Returns the stored dict, or None (and
    removes any old one) when the gallery is too small to calibrate: it then names no one."""
    t0 = time.perf_counter()
    reference = reference or Reference.load(index.model_id)
    model = calibrate(
        index.embeddings, index.meta["identity"], reference, target_fpir=config.open_set_fpir, prior=config.open_set_prior, min_probability=config.open_set_min_probability,
        possible_fpir=config.open_set_possible_fpir,
    )
    if model is None:
        index.extra.pop("open_set", None)
        log.warning("gallery too small to calibrate open-set identification: it will name no one")
        return None
    info = model.to_dict()
    info["source"] = (
        f"this gallery's photos (leave-one-out) + LFW reference strangers shipped for {reference.model_id}"
        if reference is not None
        else "this gallery's photos only (leave-one-out; no reference set ships for this model)"
    )
    info["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    info["seconds"] = round(time.perf_counter() - t0, 2)
    index.extra["open_set"] = info
    return info
