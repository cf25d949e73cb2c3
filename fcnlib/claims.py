"""The paper's claims that the course puts to the test, and the verdict each run gives them.

REPORT.md opens with a *claims ledger*: one row per claim below, with the paper's figure, ours (its
tier, seeds and spread), a verdict and a link to the notebook and figure that hold the evidence. The
registry here says *which* claims there are and where each is tested; the numbers and the verdict are
computed by the notebook in its run and recorded with ``run.claim(...)`` (never typed in).

Verdicts:

- ``reproduced`` — the paper's statement holds here as stated (an identity to rounding, the same
  number, or a comparison that comes out the way the paper says, outside the seed spread);
- ``trend reproduced`` — the direction or ordering holds, the size differs (our data and models are
  stand-ins; ``why`` says how);
- ``differs`` — it does not hold here; ``why`` says what we measured and what we think the reason is;
- ``not run in this tier`` — the tier's data cannot show it (the ``smoke`` tier trains for seconds).
"""
from __future__ import annotations

from dataclasses import dataclass

VERDICTS = ("reproduced", "trend reproduced", "differs", "not run in this tier")


@dataclass(frozen=True)
class Claim:
    id: str
    where: str          # the paper's section, table or figure
    claim: str          # what the paper says, in the course's words
    notebook: str       # the notebook that tests it
    figure: str = ""    # the figure it saves as evidence (results/figures/<notebook>/<figure>.png)


CLAIMS = [
    Claim("s5.metrics", "§5", "The four metrics (pixel accuracy, mean accuracy, mean IU, frequency weighted "
          "IU) as defined by the paper's formulas", "00_tour"),
    Claim("s3.1.identity", "§3.1", "Fully connected layers recast as convolutions compute the classifier's "
          "outputs exactly, on inputs of any size", "01_convolutionalize"),
    Claim("fig2.heatmap", "§3.1, Fig. 2", "The convolutionalized classifier's class map is a heatmap that "
          "peaks on the object", "01_convolutionalize", "fig2_heatmaps"),
    Claim("s3.1.forward_speed", "§3.1", "The dense map of AlexNet at 500×500 is faster, forward, than its "
          "227×227 windows one at a time", "01_convolutionalize", "dense_vs_naive_time"),
    Claim("s3.1.backward_speed", "§3.1", "… and backward", "01_convolutionalize", "dense_vs_naive_time"),
    Claim("table1.rf", "Table 1", "Receptive field sizes of FCN-AlexNet, FCN-VGG16, FCN-GoogLeNet",
          "02_receptive_field"),
    Claim("table1.stride", "Table 1", "Maximum stride 32 for the three nets", "02_receptive_field"),
    Claim("s4.2.crops", "§4.2, reference code", "The skip nets' crop offsets (19 / 5, 27 / 5, 9, 31) follow "
          "from the layers' coordinate maps", "02_receptive_field"),
    Claim("s3.2.stitch", "§3.2", "Shift-and-stitch equals filter rarefaction (the trick's equivalence)",
          "03_dense_prediction", "three_ways"),
    Claim("s3.3.deconv", "§3.3", "Backwards convolution with a bilinear kernel is bilinear interpolation",
          "03_dense_prediction", "deconv_vs_interpolate"),
    Claim("s4.2.upsampling", "§4.2", "In-network upsampling is more efficient than shift-and-stitch, and "
          "as good", "03_dense_prediction", "cost"),
    Claim("s4.2.start", "§4.2", "A new skip's zero-initialized score layer leaves the net's predictions "
          "unmodified at the start", "04_skip_fusion"),
    Claim("table2.ordering", "§4.2, Table 2", "Mean IU: FCN-32s-fixed < FCN-32s < FCN-16s < FCN-8s",
          "04_skip_fusion", "fig4_outputs"),
    Claim("table2.fixed", "§4.1, Table 2", "Training only the last layer (FCN-32s-fixed) reaches a good part, "
          "not all, of fine-tuning the whole net", "04_skip_fusion"),
    Claim("s4.2.pool4_only", "§4.2", "Learning from the pool4 layer alone performs poorly", "04_skip_fusion"),
    Claim("s4.2.lower_lr", "§4.2", "Lowering the learning rate without the skip improves little",
          "04_skip_fusion", "training_curves"),
    Claim("s4.2.boundaries", "§4.2, Fig. 4", "The skips refine fine detail: the gain is larger near object "
          "boundaries", "04_skip_fusion", "boundary_band_mean_iu"),
    Claim("s3.4.identity", "§3.4", "Sampling the loss with p = 1 is whole-image training exactly",
          "05_loss_sampling"),
    Claim("fig5.per_iteration", "§4.3, Fig. 5 left", "Sampling patches does not speed up convergence per "
          "iteration", "05_loss_sampling", "fig5_convergence"),
    Claim("fig5.per_second", "§4.3, Fig. 5 right", "Whole-image training is faster per second of training",
          "05_loss_sampling", "fig5_convergence"),
    Claim("s4.3.balancing", "§4.3", "Class balancing is unnecessary (background ≈ 3/4 of pixels)",
          "05_loss_sampling", "class_balancing"),
    Claim("appA.bound", "Appendix A", "Mean IU of labels downsampled by a factor f and upsampled back: "
          "near 100 up to f = 8, falling beyond", "06_metrics_upper_bound", "upper_bound_curves"),
]
BY_ID = {c.id: c for c in CLAIMS}


def check(claim_id: str, notebook: str, verdict: str, why: str) -> Claim:
    """The registered claim; a clear error for an unknown id, the wrong notebook, an unknown verdict,
    or a partial verdict without its reason."""
    if claim_id not in BY_ID:
        raise KeyError(f"unknown claim {claim_id!r}: register it in fcnlib/claims.py (known: {', '.join(BY_ID)})")
    c = BY_ID[claim_id]
    if c.notebook != notebook:
        raise ValueError(f"claim {claim_id!r} is tested by {c.notebook}, not {notebook}")
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r}: use one of {VERDICTS}")
    if verdict in ("trend reproduced", "differs") and not why:
        raise ValueError(f"claim {claim_id!r}: a '{verdict}' verdict needs its reason (why=...)")
    return c


def measured(tier: str, holds: bool, partly: bool = False, seeds=None) -> str:
    """The verdict of a claim about trained models or timings: not judged in the ``smoke`` tier (seconds
    of training, toy sizes); else ``reproduced`` if it holds — but only ``trend reproduced`` when it
    rests on a single seed (no spread to hold it against) —, ``trend reproduced`` if it holds in part
    (``partly``), ``differs`` otherwise."""
    if tier == "smoke":
        return "not run in this tier"
    if holds:
        return "trend reproduced" if seeds is not None and len(seeds) < 2 else "reproduced"
    return "trend reproduced" if partly else "differs"


def exact(holds: bool) -> str:
    """The verdict of an identity: it holds (to rounding) or it does not."""
    return "reproduced" if holds else "differs"


def spread(values) -> dict:
    """Mean, min and max of one figure over seeds (the spread a claim about trained models rests on)."""
    values = [float(v) for v in values]
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values), "n": len(values)}


def apart(lower, higher) -> bool:
    """True when every value of ``lower`` lies below every value of ``higher``: an ordering that holds
    outside the seed spread (over seeds, not only on average)."""
    return max(float(v) for v in lower) < min(float(v) for v in higher)


def fmt(values, digits: int = 1) -> str:
    """``mean (min–max, n seeds)`` of one figure over seeds, for a claim's text."""
    sp = spread(values)
    if sp["n"] == 1:
        return f"{sp['mean']:.{digits}f} (1 seed)"
    return f"{sp['mean']:.{digits}f} ({sp['min']:.{digits}f}–{sp['max']:.{digits}f}, {sp['n']} seeds)"
