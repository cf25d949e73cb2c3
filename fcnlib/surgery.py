"""Staged surgery (§4.2): FCN-16s from a trained FCN-32s, FCN-8s from FCN-16s, each new skip's score
layer zero so that the fused map starts where its parent's was; §4.2's pool4-only control; and
FCN-32s-fixed (only the last layer learns, §4.1).

    fcn16s_from(fcn32s_model), fcn8s_from(fcn16s_model)   # new skip scores zero, upsamplings bilinear
    pool4_only_from(fcn32s_model)                         # scores from pool4 alone
    freeze_backbone(model); trainable(model) -> [names]   # FCN-32s-fixed: only score_fr learns
"""
from __future__ import annotations

import copy

from torch import nn

from .models import FCN

def _upgrade(model: FCN, variant: str) -> FCN:
    """A new FCN of ``variant`` with a copy of ``model``'s backbone and every score/upsampling layer
    the two share; the new skip score layers are zero (so the fused map starts unchanged)."""
    parts = [copy.deepcopy(getattr(model, n)) for n in ("to_pool3", "to_pool4", "to_pool5", "fc")]
    if variant == "pool4":   # no fc path: pool5, fc6 and fc7 are not part of the net
        parts[2:] = [nn.Sequential(), nn.Sequential()]
    new = FCN(*parts, num_classes=model.num_classes, variant=variant, arch=model.arch,
              source=model.source, channels=tuple(model.channels[k] for k in ("pool3", "pool4", "pool5", "fc7")))
    new.transplanted.copy_(model.transplanted)
    for name in ("score_fr", "upscore2", "score_pool4", "upscore_pool4", "score_pool3"):
        if hasattr(model, name) and hasattr(new, name):
            getattr(new, name).load_state_dict(getattr(model, name).state_dict())
    for name, p in new.named_parameters():   # an FCN-32s-fixed parent may have frozen its backbone
        p.requires_grad_(not name.startswith("upscore.")) if not name.startswith("upscore.") else None
    return new.to(next(model.parameters()).device).train(model.training)


def fcn16s_from(fcn32s_model: FCN) -> FCN:
    """FCN-16s initialized from a trained FCN-32s (§4.2): same backbone and ``score_fr``; a new 1×1
    ``score_pool4`` (zero) and a 2× ``upscore2`` (bilinear, learned). At step 0 the stride-16 fused map
    is exactly the FCN-32s's coarse scores upsampled 2× (the skip adds zeros)."""
    if fcn32s_model.variant != "32s":
        raise ValueError(f"fcn16s_from needs an FCN-32s, got FCN-{fcn32s_model.variant}")
    return _upgrade(fcn32s_model, "16s")


def fcn8s_from(fcn16s_model: FCN) -> FCN:
    """FCN-8s from a trained FCN-16s: adds a zero ``score_pool3`` and a learned 2× ``upscore_pool4``."""
    if fcn16s_model.variant != "16s":
        raise ValueError(f"fcn8s_from needs an FCN-16s, got FCN-{fcn16s_model.variant}")
    return _upgrade(fcn16s_model, "8s")


def pool4_only_from(fcn32s_model: FCN) -> FCN:
    """§4.2's control "learning from the pool4 layer alone": FCN-32s's layers up to pool4, a zero 1×1
    ``score_pool4`` and a fixed ×16 upsampling — no fc6/fc7 path."""
    return _upgrade(fcn32s_model, "pool4")


def freeze_backbone(model: FCN) -> FCN:
    """FCN-32s-fixed (Table 2's first row): only the last layer (``score_fr``) is trained."""
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("score_fr."))
    return model


def trainable(model: nn.Module) -> list[str]:
    """Names of the parameters that training will change."""
    return [n for n, p in model.named_parameters() if p.requires_grad]
