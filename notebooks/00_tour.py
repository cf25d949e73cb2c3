# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · A tour of the course
#
# This course walks through *Fully Convolutional Networks for Semantic Segmentation* (Long, Shelhamer
# and Darrell, CVPR 2015) one idea at a time. Every idea is a small module of `fcnlib`, shown here and
# tested in `tests/`; every notebook measures what the paper claims and records it in
# `results/summary.json`, beside the paper's own numbers in `results/REPORT.md`.
#
# This first notebook checks the machine, introduces the *embedded* dataset that stands in for
# PASCAL VOC, and works the paper's four metrics (Section 5) through by hand.

# %% [markdown]
# **You will learn:** how the course is laid out (tiers, records, the report); the embedded scenes that
# stand in for PASCAL VOC and why their sizes; the paper's four metrics (§5), worked by hand and written
# as code.
#
# **It assumes:** Python and a first look at PyTorch tensors; nothing of the paper yet.
#
# **Time on a 2-core CPU:** about 10 s in the default (embedded) tier.

# %% tags=["parameters"]
tier = "embedded"   # smoke | embedded | paper
device = "auto"     # auto | cuda | mps | cpu
seed = 0
solutions = False   # True: unattempted exercises are answered from the instructor key (batch runs)
results_dir = None  # None: <repo>/results (or $FCN_RESULTS)

# %%
import numpy as np
import torch
import matplotlib.pyplot as plt

import fcnlib
from fcnlib import claims, data, exercises, metrics, runtime, tiers, viz, world

run = fcnlib.start_run("00_tour", tier=tier, device=device, seed=seed, results_dir=results_dir)
n_show = tiers.pick(tier, smoke=4, embedded=8)
n_stats = tiers.pick(tier, smoke=20, embedded=200)
size = tiers.pick(tier, smoke=64, embedded=world.SIZE)     # the embedded world's scenes (fcnlib.world)
run

# %% [markdown]
# ## 1. The machine
#
# The same notebooks run on a CUDA GPU (with bf16 autocast and channels-last convolutions), on an
# Apple GPU, or on a plain CPU. `device="auto"` picks the first of cuda → mps → cpu. On a CPU, the
# number of threads is *measured*: on a small shared VM one thread can beat two.

# %%
info = runtime.versions()
print(f"device: {run.device}   CPU threads: {run.threads}   (of {__import__('os').cpu_count()} cores)")
for k, v in info.items():
    print(f"{k:12s} {v}")
run.record(device=str(run.device), threads=run.threads, torch=info["torch"])

# %% [markdown]
# **Widgets.** Several notebooks have an interactive control (a slider, a dropdown). Below is a test
# slider: in JupyterLab you should see it and be able to move it. In a batch run (papermill), each
# widget has a *static twin*, a figure drawn for fixed values, so nothing is lost.

# %%
print("ipywidgets available:", viz.widgets_available())
if viz.widgets_available():
    import ipywidgets as w
    display(w.IntSlider(value=3, min=0, max=10, description="test slider"))

# %% [markdown]
# ## 2. The embedded dataset
#
# The paper's datasets (PASCAL VOC, NYUDv2, SIFT Flow) and its ImageNet-pretrained weights are large
# downloads. So that every lesson runs offline in minutes, the course *generates* its data: scenes of
# twenty object classes — five shapes times four surface textures — on a blotchy background.
# Every object draws its colour from the same distribution, so a single pixel's colour says nothing
# about its class: the texture is visible in a few pixels, the shape only over the whole object
# (the *what* needs context), and crosses and rings have thin parts (the *where* needs fine detail).
# Labels follow VOC's conventions: 0 is background and 255 marks *void*, a thin band along object
# boundaries that is ignored in training and evaluation.

# %%
viz.show_source(data.render)

# %%
train_set = world.scenes("train", n_stats, seed=seed, size=size)
imgs, labels = zip(*(train_set[i] for i in range(n_show)))
fig = viz.show_samples(imgs, labels)
run.savefig(fig, "samples_voc_palette")

# %% [markdown]
# The same labels with a colour-blind-safe palette (Paul Tol's schemes), and the legend:

# %%
fig, axes = plt.subplots(1, n_show, figsize=(2.2 * n_show, 2.4))
for ax, lab in zip(axes, labels):
    ax.imshow(viz.colorize(lab, "cb"), interpolation="nearest"); ax.axis("off")
viz.class_legend(fig, labels, data.CLASSES, "cb")   # under the panels: the classes they show
run.savefig(fig, "samples_cb_palette")

# %% [markdown]
# How much of each class is there? PASCAL VOC is about three quarters background (Section 4.3); the cell
# below measures the embedded scenes' share.

# %%
_, Y = train_set.tensors()
counts = torch.bincount(Y[Y != data.VOID].flatten(), minlength=data.NUM_CLASSES)
bg_fraction = (counts[0] / counts.sum()).item()
void_fraction = (Y == data.VOID).float().mean().item()
fig, ax = plt.subplots(figsize=(9, 2.5))
ax.bar(range(data.NUM_CLASSES), (counts / counts.sum()).numpy(), color=viz.voc_palette()[:21] / 255)
ax.set_xticks(range(data.NUM_CLASSES), data.CLASSES, rotation=90, fontsize=7)
ax.set_ylabel("pixel fraction"); ax.set_yscale("log")
run.savefig(fig, "class_frequencies")
print(f"background {bg_fraction:.1%} of labelled pixels, void {void_fraction:.1%} of all pixels")
run.record(dataset={"size": size, "n": n_stats, "background_fraction": bg_fraction,
                    "void_fraction": void_fraction, "classes": data.NUM_CLASSES})

# %% [markdown]
# **One world for the whole course.** Every notebook draws its scenes, its stand-in classifier and its
# training recipe from `fcnlib.world`. They are chosen so that the paper's regime holds at a size a CPU
# trains in minutes. In VOC at 500 px an object spans several of the classifier's stride-32 cells, so
# FCN-32s can find it, while its outline and thin parts are finer than a cell, so the skips to stride 16
# and 8 have something to add. Here: 128-px scenes with objects of radius 19–45 px. The cell below
# measures that regime on the val scenes: how many cells an object spans, and how much of an object lies
# within 4 px of a boundary, where a stride-32 prediction cannot be exact.

# %%
viz.show_source(world.scene_kwargs)
regime = world.regime(n=tiers.pick(tier, smoke=10, embedded=200), seed=seed)
print(f"{world.SIZE}-px scenes, object radius {world.RADIUS_PX[0]:.0f}–{world.RADIUS_PX[1]:.0f} px: an object spans "
      f"{regime['object_cells_median']:.1f} stride-32 cells across (median; 10–90%: {regime['object_cells_p10']:.1f}–"
      f"{regime['object_cells_p90']:.1f}); {regime['object_pixels_within_4px']:.0%} of object pixels lie within 4 px "
      f"of a boundary; background {regime['background_share']:.0%} of labelled pixels")
run.record(world=regime)

# %% [markdown]
# Each sample is a pure function of (seed, split, index, size): generating it twice gives the same
# bytes, so every run of the course sees the same data.

# %%
a, b = data.render(1234, 64), data.render(1234, 64)
deterministic = torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
assert deterministic, "the generator must be deterministic"
run.record(deterministic=deterministic)

# %% [markdown]
# ## 3. The four metrics, by hand
#
# Section 5 scores a segmentation with four numbers computed from one confusion matrix $n_{ij}$
# (pixels of class $i$ predicted as $j$) accumulated over the *whole* dataset, void ignored.
# With $t_i = \sum_j n_{ij}$ pixels of class $i$:
#
# * pixel accuracy $\sum_i n_{ii} / \sum_i t_i$
# * mean accuracy $\frac{1}{n_{cl}} \sum_i n_{ii} / t_i$
# * mean IU $\frac{1}{n_{cl}} \sum_i n_{ii} / (t_i + \sum_j n_{ji} - n_{ii})$
# * frequency-weighted IU $(\sum_k t_k)^{-1} \sum_i t_i\, n_{ii} / (t_i + \sum_j n_{ji} - n_{ii})$
#
# Here is a 4×4 image with three classes and one void pixel, and a prediction of it:

# %%
target = torch.tensor([[0, 0, 0, 1],
                       [0, 0, 1, 1],
                       [0, 2, 2, 255],
                       [0, 2, 2, 2]])
pred = torch.tensor([[0, 0, 1, 1],
                     [0, 0, 1, 1],
                     [0, 0, 2, 2],
                     [0, 2, 2, 0]])
cm = metrics.confusion(pred, target, num_classes=3)
print("confusion matrix (rows: truth, columns: prediction)\n", cm.numpy())

# %% [markdown]
# By hand: the diagonal holds the correct pixels, 6 + 3 + 3 = 12 of the 15 non-void pixels (pixel accuracy 0.8).
# Class 0 has 7 pixels, 6 right; class 1 has 3, all right; class 2 has 5, 3 right.
# Below, the same numbers from the formulas written out with NumPy, then from `fcnlib.metrics`.

# %%
n = cm.numpy().astype(float)
t = n.sum(1)
iu = np.diag(n) / (t + n.sum(0) - np.diag(n))
by_hand = {"pixel_acc": np.diag(n).sum() / t.sum(), "mean_acc": np.mean(np.diag(n) / t),
           "mean_iu": iu.mean(), "fw_iu": (t * iu).sum() / t.sum()}
ours = metrics.scores(cm)
for k in by_hand:
    print(f"{k:10s} by hand {by_hand[k]:.4f}   fcnlib {ours[k]:.4f}")
    assert abs(by_hand[k] - ours[k]) < 1e-12
run.record(worked_example={k: ours[k] for k in by_hand})
gap = max(abs(by_hand[k] - ours[k]) for k in by_hand)
run.claim("s5.metrics", ours=f"fcnlib = by hand to {gap:.0e}", paper="§5's four formulas",
          verdict=claims.exact(gap < 1e-12))

# %% [markdown]
# Notice how the metrics disagree: pixel accuracy is dominated by the big classes, mean IU treats every
# class alike and also punishes false positives (the union in the denominator). Notebook 06 goes
# deeper, including how far from perfect a *coarse* prediction must be.
#
# **Exercise 1.** Compute the mean IU of the confusion matrix below (rows truth, columns prediction)
# as a plain Python float.

# %%
exercises.load("00", key=solutions)
from fcnlib.exercise_bank.ex00 import EXERCISE_CM
print(EXERCISE_CM)

# %%
answer = None  # ✏️ your answer here, e.g. answer = 0.5
exercises.check("00.mean_iu", answer)

# %% [markdown]
# **Exercise 2.** Now the frequency-weighted IU of the same matrix.

# %%
answer = None  # ✏️ your answer here
exercises.check("00.fw_iu", answer)

# %% [markdown]
# **Exercise 3 (code).** Every metric starts from the confusion matrix. Write it: `confusion(pred, label, n)`
# takes integer tensors of the same shape (predicted and true classes, void = 255 in the label) and
# returns the (n, n) matrix of counts, rows the truth and columns the prediction, void pixels left out.
# It is checked against `fcnlib.metrics.confusion` on three inputs; a wrong version is told where it
# first differs.

# %%
def confusion(pred, label, n):
    raise NotImplementedError  # ✏️ your code here


exercises.check_function("00.confusion", confusion)

# %% [markdown]
# ## 4. Where the course goes
#
# | notebook | paper | what you will see |
# |---|---|---|
# | 01 convolutionalize | §3.1, Fig. 2 | a classifier turned into a dense predictor; dense vs naive timing |
# | 02 receptive field | §3, Table 1 | field sizes, strides, coordinate maps and crop offsets |
# | 03 dense prediction | §3.2, §3.3 | shift-and-stitch = filter rarefaction; bilinear deconvolution |
# | 04 skip fusion | §4.1–4.3, Table 2, Figs. 3–4 | FCN-32s → 16s → 8s, trained in stages |
# | 05 loss sampling | §3.4, §4.3, Fig. 5 | patch sampling as loss sampling; convergence curves |
# | 06 metrics & upper bound | §5, App. A | the four metrics' pitfalls; the mean-IU upper bound |

# %% [markdown]
# ## Summary
#
# The course runs on generated scenes whose objects span one to three stride-32 cells, as VOC's objects do
# at 500 px; every result is recorded beside the paper's. The four metrics come from one confusion matrix
# and weigh classes differently: mean IU, the paper's headline, treats every class alike and punishes
# false positives.
#
# **Next:** [01 · Convolutionalization](01_convolutionalize.ipynb).

# %%
run.finish()
