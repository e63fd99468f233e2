"""The improved model's losses, exactly as the original report defines them."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def contrastive_loss(e1: torch.Tensor, e2: torch.Tensor, t: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Mean over the batch of 0.5 * (t * d + (1 - t) * relu(margin - sqrt(d))^2).

    d: squared Euclidean distance between the two embeddings of each pair; t: 1 for the same
    person, 0 for different people. Same-person pairs are pulled together; different-person
    pairs are pushed apart until their (non-squared) distance reaches `margin`.
    """
    t = t.to(e1.dtype)
    d = (e1 - e2).pow(2).sum(dim=1)
    # sqrt'(0) is infinite: clamp so that two identical embeddings of different people give a
    # finite (zero) gradient instead of NaN; the value is unchanged for any d above 1e-16.
    dist = d.clamp_min(1e-16).sqrt()
    return (0.5 * (t * d + (1 - t) * F.relu(margin - dist).pow(2))).mean()


def consistency_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the decoder's reconstruction and the (standardized) input."""
    return F.mse_loss(reconstruction, target)


def improved_loss(
    e1: torch.Tensor,
    e2: torch.Tensor,
    t: torch.Tensor,
    recon: torch.Tensor,
    target: torch.Tensor,
    margin: float = 1.0,
    consistency_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """contrastive + consistency_weight * consistency; also the parts as floats for the log."""
    c = contrastive_loss(e1, e2, t, margin)
    r = consistency_loss(recon, target)
    total = c + consistency_weight * r
    return total, {"contrastive": float(c.detach()), "consistency": float(r.detach())}
