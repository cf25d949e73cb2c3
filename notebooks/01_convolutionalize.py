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
# # 01 · Convolutionalization: classifiers become dense predictors
#
# Section 3.1 of the paper starts from an observation: the fully connected layers of a classifier
# such as AlexNet "can also be viewed as convolutions with kernels that cover their entire input
# regions". Cast that way, the classifier accepts an input of any size and returns a *map* of class
# scores — one score vector per input window, computed in a single pass that shares the work of
# overlapping windows (Fig. 2). This notebook
#
# 1. derives why a fully connected layer *is* a convolution, and shows the shapes;
# 2. convolutionalizes torchvision's AlexNet and checks that nothing changed at its native size;
# 3. draws Fig. 2's heatmaps with the course's pretrained stand-in classifier on a whole scene;
# 4. states precisely in what sense every output cell "is the classifier on its patch" — exactly, and
#    where zero padding makes it only nearly so — with a widget to look at any cell;
# 5. measures the efficiency claim (dense vs naive, forward and backward) and explains it with FLOPs.

# %% [markdown]
# **You will learn:** why a fully connected layer is a convolution (§3.1); how a classifier becomes a
# dense predictor and Fig. 2's heatmaps; in what sense each output cell is the classifier on its window;
# why the dense pass is cheaper than sliding windows, in FLOPs.
#
# **It assumes:** notebook 00; what a convolution, a pooling and a fully connected layer compute.
#
# **Time on a 2-core CPU:** about 35 s in the default (embedded) tier.

# %% tags=["parameters"]
tier = "embedded"   # smoke | embedded | paper
device = "auto"     # auto | cuda | mps | cpu
seed = 0
solutions = False   # True: unattempted exercises are answered from the instructor key (batch runs)
results_dir = None  # None: <repo>/results (or $FCN_RESULTS)

# %%
import copy
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torchvision

import fcnlib
from fcnlib import convolutionalize as cv
from fcnlib import claims, data, efficiency, exercises, heatmaps, paper, paths, tiers, viz, world

run = fcnlib.start_run("01_convolutionalize", tier=tier, device=device, seed=seed, results_dir=results_dir)
scene_size = tiers.pick(tier, smoke=320, embedded=320)     # Fig. 2: world objects on a canvas > rf (276 px)
n_scenes = tiers.pick(tier, smoke=2, embedded=25)          # scenes scored for the heatmap check
bench_size = tiers.pick(tier, smoke=288, embedded=500)     # §3.1 uses 500×500 (smoke: a 3×3 grid)
bench_reps = tiers.pick(tier, smoke=1, embedded=3, paper=5)
bench_single = tiers.pick(tier, smoke=3, embedded=9, paper=None)      # windows timed one by one (None: all)
exercises.load("01", key=solutions)
run

# %% [markdown]
# ## 1. A fully connected layer is a convolution
#
# AlexNet's last pooling layer, pool5, outputs a map $x$ of $C = 256$ channels on a $k \times k = 6 \times 6$
# grid. `torch.flatten` turns it into a vector of $C k^2 = 9216$ numbers, **C-major**: element
# $(c, i, j)$ goes to index $c k^2 + i k + j$. fc6 multiplies it by $W$ of shape $(4096, 9216)$:
#
# $$y_o = b_o + \sum_{c,i,j} W_{o,\; c k^2 + i k + j}\; x_{c,i,j}
#       = b_o + \sum_{c,i,j} K_{o,c,i,j}\; x_{c,i,j}, \qquad K = W\texttt{.view}(4096, C, k, k).$$
#
# The right-hand side is a $k \times k$ convolution with kernel $K$ evaluated where the kernel fits the map
# exactly — the only place it fits on a $6 \times 6$ map. On a larger map the same convolution slides and
# gives an $(H' - k + 1) \times (W' - k + 1)$ grid of fc6 outputs. fc7 and fc8 read a vector with no spatial
# extent, so they become $1 \times 1$ convolutions: $(4096, 4096) \to (4096, 4096, 1, 1)$ and
# $(1000, 4096) \to (1000, 4096, 1, 1)$.

# %%
viz.show_source(cv.linear_to_conv)

# %% [markdown]
# A check on a small layer, and what goes wrong with the wrong reshape (rows first, channels last —
# the order a channels-last framework would use):

# %%
C, k, out = 3, 4, 5
lin = torch.nn.Linear(C * k * k, out).double()
xs = torch.randn(2, C, k, k, dtype=torch.float64)
conv = cv.linear_to_conv(lin, C, k)
with torch.no_grad():
    right = (conv(xs).flatten(1) - lin(torch.flatten(xs, 1))).abs().max().item()
    wrong_kernel = lin.weight.view(out, k, k, C).permute(0, 3, 1, 2)          # (out, C, k, k), H-major
    wrong = (torch.nn.functional.conv2d(xs, wrong_kernel, lin.bias).flatten(1) - lin(torch.flatten(xs, 1))).abs().max().item()
print(f"Linear {tuple(lin.weight.shape)} → Conv2d {tuple(conv.weight.shape)}")
print(f"C-major view: max |difference| = {right:.1e};  H-major view: {wrong:.2f}")
assert right < 1e-12 and wrong > 1e-3, "the kernel must be weight.view(out, C, k, k)"

# %% [markdown]
# ## 2. Convolutionalizing AlexNet
#
# `convolutionalize` keeps the classifier's `features` and turns its `classifier` into convolutions,
# ReLU and dropout in place, with the paper's layer names. torchvision's AlexNet has one more layer:
# `AdaptiveAvgPool2d((6, 6))` between them. At the native input size the features already are $6 \times 6$
# and the pool is the identity; on another size it *averages the map down to* $6 \times 6$ — torchvision's way
# of accepting any size, which throws away the spatial layout we want. So `convolutionalize` drops it
# and lets fc6 slide instead. The weights here are random: the identities hold for any weights (the
# `paper` tier loads ImageNet's).

# %%
viz.show_source(cv.convolutionalize)

# %%
alexnet = torchvision.models.alexnet().eval()
dense = cv.convolutionalize(alexnet).eval()
print(dense)


def shapes(net, size):
    """Output shape of each named child for a size×size input (on the meta device: no compute)."""
    x, out = torch.empty(1, 3, size, size, device="meta"), {}
    for name, m in copy.deepcopy(net).to("meta").named_children():
        x = m(x)
        out[name] = tuple(x.shape[1:])
    return out


s224, s500 = shapes(dense, 224), shapes(dense, 500)
print(f"{'layer':10s} {'224×224 input':>18s} {'500×500 input':>18s}")
for name in s224:
    print(f"{name:10s} {str(s224[name]):>18s} {str(s500[name]):>18s}")

# %% [markdown]
# At the native size, the convolutionalized net must give the classifier's logits. They can differ by
# rounding at most: fc6 as a convolution sums the same products as `nn.Linear` in another order. In
# float64 that rounding is far below anything a prediction could notice; in float32 it is about 1e-6
# of the logits' size.

# %%
a64 = copy.deepcopy(alexnet).double()
with torch.no_grad():
    for m in a64.modules():                      # non-zero biases, as in a trained net
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.bias.uniform_(-0.1, 0.1)
    x224 = torch.randn(2, 3, 224, 224, dtype=torch.float64)
    logit_diff64 = (cv.convolutionalize(a64)(x224)[:, :, 0, 0] - a64(x224)).abs().max().item()
    a32 = copy.deepcopy(a64).float()
    logit_diff32 = (cv.convolutionalize(a32)(x224.float())[:, :, 0, 0] - a32(x224.float())).abs().max().item()
print(f"max |logit difference| at 224×224: float64 {logit_diff64:.1e}, float32 {logit_diff32:.1e}")
assert logit_diff64 < 1e-9 and logit_diff32 < 1e-4
run.record(max_abs_logit_diff_float64=logit_diff64, max_abs_logit_diff_float32=logit_diff32);
run.claim("s3.1.identity", ours=f"max |Δ logit| {logit_diff64:.0e} (float64), {logit_diff32:.0e} (float32)",
          paper="the same outputs", verdict=claims.exact(logit_diff64 < 1e-9 and logit_diff32 < 1e-4))

# %% [markdown]
# **Geometry** (`receptive_field.geometry`, the course's one geometry: field size, jump, centre).
# Each output cell sees a window of `rf` pixels; neighbouring cells are `jump` (the total stride)
# pixels apart; cell $(i, j)$'s window starts at $(32 i + \text{start}, 32 j + \text{start})$, where
# $-\text{start}$ is all the layers' zero padding counted in input pixels (conv1 pads 2 px, conv2 2 units
# of 8 px, conv3–5 1 unit of 16 px each: $2 + 16 + 48 = 66$). The receptive field matches Table 1's.
#
# On 500×500 torchvision's AlexNet gives a 9×9 grid where the paper reports 10×10: the paper's Caffe
# AlexNet has no padding in conv1 and *rounds its pooling up* (Caffe's ceil mode). Changing just those
# two things (`efficiency.caffe_geometry`) reproduces the paper's grid:

# %%
g = dense.geometry
grid500 = dense.grid(500)
caffe_like = efficiency.caffe_geometry(alexnet)
grid500_caffe = cv.convolutionalize(caffe_like).grid(500)
paper_grid = efficiency.paper_speedups()["grid"]
print(f"receptive field {g.rf} px, stride (jump) {g.jump}, cell 0's window starts at {g.start} px; "
      f"smallest input {dense.min_size} px")
print(f"500×500 → {grid500[0]}×{grid500[1]} (torchvision), {grid500_caffe[0]}×{grid500_caffe[1]} (Caffe geometry), "
      f"paper {paper_grid[0]}×{paper_grid[1]}")
assert list(grid500_caffe) == paper_grid
t1 = paper.table1()["FCN-AlexNet"]
run.record(rf=g.rf, stride=g.jump, start=g.start, min_input=dense.min_size, output_grid_500=list(grid500),
           output_grid_500_caffe_geometry=list(grid500_caffe))
run.compare("AlexNet receptive field", g.rf, paper=t1["rf size"], unit="px")
run.compare("AlexNet output grid on 500×500 (torchvision / Caffe geometry)",
            f"{grid500[0]}×{grid500[1]} / {grid500_caffe[0]}×{grid500_caffe[1]}",
            paper=f"{paper_grid[0]}×{paper_grid[1]}", note="Caffe: conv1 unpadded, pooling rounds up");

# %% [markdown]
# An input smaller than one window is an error that says so (instead of a pooling layer's complaint
# about a negative output size):

# %%
try:
    dense(torch.zeros(1, 3, 200, 300))
except ValueError as e:
    print("ValueError:", e)

# %% [markdown]
# ## 3. Fig. 2: a classifier becomes a heatmap
#
# The course's stand-in for an ImageNet classifier is a small VGG16 (torchvision's own VGG class,
# channels scaled down) pretrained to classify 96×96 *object crops* into 48 object classes (the scenes'
# 20 among them) or background: the object near the centre, others cut by the border. Convolutionalized,
# it runs on a whole scene and gives, for every class, a map of scores — one per 96-px window at stride
# 32. The scenes are the embedded world's (`fcnlib.world`), on a 320-px canvas — larger than one
# receptive field with its padding (276 px), so that section 4 has cells whose window lies inside the
# image: the same objects, in pixels, as everywhere in the course.

# %%
clf = world.standin(device=run.device)
net = cv.convolutionalize(clf).eval()
crop = clf.crop
X, Y = world.scenes("val", n_scenes, seed=seed, size=scene_size, objects=(2, 5)).tensors()  # 2–5 objects per scene
with torch.no_grad():
    P = net(X.to(run.device)).softmax(1).cpu()                       # (N, 49, h, w): 48 classes and background
sg = net.geometry
h, w = P.shape[-2:]
print(f"{crop}-px classifier on {scene_size}×{scene_size} scenes → a {h}×{w} grid of {P.shape[1]} class probabilities; "
      f"window {crop} px at stride {sg.jump} (receptive field {sg.rf} px with the padding)")


def cell_extent(h, w, stride=sg.jump, size=crop):
    """imshow extent placing cell (i, j) as a stride-wide square centred on its window's centre."""
    c0 = (size - 1) / 2
    return (c0 - stride / 2, c0 + (w - 0.5) * stride, c0 + (h - 0.5) * stride, c0 - stride / 2)


def draw_heatmaps(n, classes):
    fig, axes = plt.subplots(1, 2 + len(classes), figsize=(2.6 * (2 + len(classes)), 2.9))
    axes[0].imshow(viz.image_np(X[n])); axes[0].set_title("scene")
    axes[1].imshow(viz.colorize(Y[n]), interpolation="nearest"); axes[1].set_title("label")
    for ax, c in zip(axes[2:], classes):
        ax.imshow(viz.image_np(X[n]))
        heat = ax.imshow(P[n, c], extent=cell_extent(h, w), alpha=0.65, vmin=0, vmax=1, cmap="magma")
        ax.set_xlim(0, scene_size); ax.set_ylim(scene_size, 0)
        ax.set_title(f"p({data.CLASSES[c]})", fontsize=9)
    for ax in axes:
        ax.set_xticks([]); ax.set_yticks([])
    fig.tight_layout()
    fig.colorbar(heat, ax=list(axes[2:]), fraction=0.015, pad=0.01, label="class probability of the cell")
    viz.class_legend(fig, [Y[n]], data.CLASSES)
    return fig


present = [c for c in Y[0].unique().tolist() if c not in (0, data.VOID)]
fig = draw_heatmaps(0, present[:3] + [0])
run.savefig(fig, "fig2_heatmaps");

# %% [markdown]
# Do the maps light up where the objects are, and name them? For every object class in every scene, take
# the cell where that class scores highest and ask whether the cell lies on the object (its stride-32
# square, around its window's centre, holds a pixel of the class) and whether the classifier's top class
# there — among all 49 — is the object's; *chance* is the fraction of cells on the object. The misses
# are sorted by what the classifier named instead (`fcnlib.heatmaps`).

# %%
viz.show_source(heatmaps.miss_kind)

# %%
hm = heatmaps.summarize(heatmaps.peak_hits(P, Y, sg.jump, crop))
print(f"peak cell on the object for {hm['peak_on_object']:.0%} of {hm['objects']} objects (chance {hm['chance']:.0%}); "
      f"on the object and naming its class among all {P.shape[1]} classes: {hm['peak_on_object_and_named']:.0%}; "
      f"among the scenes' {data.NUM_CLASSES}: {hm['named_among_scene_classes']:.0%}")
print("misses:", ", ".join(f"{k} {v}" for k, v in hm["misses"].items()))
run.record(heatmap={**hm, "scene_size": scene_size, "grid": [h, w]});
if tier != "smoke":
    assert hm["peak_on_object"] > 2 * hm["chance"], "the score maps should peak on the objects"
named, on_rate = hm["peak_on_object_and_named"], hm["peak_on_object"]
run.claim("fig2.heatmap", ours=f"peak cell on the object and naming its class for {named:.0%} of {hm['objects']} objects "
                               f"(on the object: {on_rate:.0%}; chance {hm['chance']:.0%}; named among the scenes' "
                               f"{data.NUM_CLASSES} classes: {hm['named_among_scene_classes']:.0%})",
          paper="qualitative (Fig. 2)", seeds=[seed],
          verdict=claims.measured(tier, named >= 0.9, partly=on_rate > 2 * hm["chance"], seeds=[seed]),
          why="one pretrained classifier, no training in this notebook; the claim is met at ≥ 90% of objects "
              "named among all 49 classes. Most misses name a class the scenes never show (a crescent for a "
              "partly hidden disk, a grid for dots); tools/frontier_heatmap.py measures the rate against "
              "the stand-in's pretraining length")

# %% [markdown]
# Read the misses as you would an ImageNet classifier's on a VOC photo: the stand-in knows 28 object
# classes the scenes never contain, and its pretraining crops paint other objects *behind* the one
# it names, never in front — so a disk half hidden behind another object *is* a crescent to it, dots
# seen through clutter a grid. Among the scenes' own 21 classes — the question an FCN asks, once its
# classifier layer is replaced (§4.1) — it names more of them. How the rate grows with the stand-in's
# pretraining is measured by `tools/frontier_heatmap.py` (the README quotes its table).

# %% [markdown]
# ## 4. Every cell is the classifier on its window — precisely
#
# Cell $(i, j)$ depends on the input window of `rf` pixels at $(32i - \text{offset}, 32j - \text{offset})$.
# Three statements, each checked here in float64 on the stand-in:
#
# 1. **No padding** (`strip_padding` sets every layer's padding to 0): every cell *equals* the
#    classifier run on its window — exactly.
# 2. **With padding** (the real net): a cell whose window lies inside the image never sees a padded
#    zero, and equals the *unpadded* classifier on its window — exactly.
# 3. **With padding, against the classifier on a crop of its native size** (a 96-px crop at
#    $(32i, 32j)$, what a sliding-window classifier would run): *not* exact. The crop's layers see zero
#    padding at the crop's borders where the dense net sees the rest of the image. No padding of the
#    *input* can reproduce this — a padded pixel becomes ReLU(bias), not zero, after one layer — so the
#    difference is a property of padded nets, measured below.

# %%
clf64 = copy.deepcopy(clf).cpu().double()
twin = cv.strip_padding(clf64)
tg = cv.convolutionalize(twin).geometry
x_scene = X[:1].double()
with torch.no_grad():
    xt = torch.randn(1, 3, tg.rf + 2 * tg.jump, tg.rf + tg.jump, dtype=torch.float64)
    diff_unpadded = (cv.convolutionalize(twin)(xt) - cv.sliding_window(twin, xt, tg.rf, tg.jump)).abs().max().item()
    d64 = cv.convolutionalize(clf64)(x_scene)                                       # (1, 49, h, w)
    windows, (hi, wi), (i0, j0) = cv.patches(x_scene, sg.rf, sg.jump, sg.start)
    inner = cv.sliding_window(twin, x_scene, sg.rf, sg.jump, sg.start)
    diff_interior = (d64[..., i0:i0 + hi, j0:j0 + wi] - inner).abs().max().item()
    crops = cv.sliding_window(clf64, x_scene, crop, sg.jump)                     # (1, 49, h, w)
diff_crop = (d64 - crops).abs()
agree = (d64.argmax(1) == crops.argmax(1)).float().mean().item()
print(f"1. unpadded net, every cell vs its {tg.rf}-px window:   max |Δlogit| = {diff_unpadded:.1e}")
print(f"2. padded net, {hi}×{wi} interior cells vs unpadded classifier on their window: {diff_interior:.1e}")
print(f"3. padded net, all {h}×{w} cells vs the classifier on {crop}-px crops: max |Δlogit| = {diff_crop.max():.2f} "
      f"(logits span {d64.min():.1f}…{d64.max():.1f}); same top class in {agree:.0%} of cells")
assert diff_unpadded < 1e-9 and diff_interior < 1e-9
run.record(max_abs_diff_cell_vs_window_unpadded=diff_unpadded, max_abs_diff_interior_cell_vs_window=diff_interior,
           max_abs_diff_cell_vs_native_crop_padded=diff_crop.max().item(), top1_agreement_cell_vs_crop=agree);

# %% [markdown]
# Statement 3's difference is large for this stand-in: its 96-px training crop is about a third of its
# 276-px receptive field, so in a crop the deep layers see mostly zero padding, learned as "nothing
# here"; in the dense pass they see the neighbouring image instead. The maps still peak on the objects
# (section 3), but a convolutionalized classifier is not a sliding-window classifier with the same
# answers — one more reason the paper *fine-tunes* the whole net for segmentation (Section 4.1).
#
# **Look at any cell.** The solid box is the 96-px crop a sliding-window classifier would see, the
# dashed box the cell's full receptive field (clipped to the image). The bars compare the dense net's
# probabilities for that cell with the classifier's on the crop.

# %%
Pc = crops.softmax(1)[0].float()
Pd = d64.softmax(1)[0].float()


def show_cell(i=0, j=0):
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6), gridspec_kw={"width_ratios": [1, 1.4]})
    a.imshow(viz.image_np(X[0]))
    a.add_patch(plt.Rectangle((sg.jump * j - 0.5, sg.jump * i - 0.5), crop, crop, fill=False, ec="yellow", lw=2))
    t, l = sg.jump * i + sg.start, sg.jump * j + sg.start
    a.add_patch(plt.Rectangle((l - 0.5, t - 0.5), sg.rf, sg.rf, fill=False, ec="white", lw=1, ls="--"))
    a.set_xlim(-0.5, scene_size - 0.5); a.set_ylim(scene_size - 0.5, -0.5); a.axis("off")
    a.set_title(f"cell ({i}, {j})")
    top = torch.topk(Pd[:, i, j] + Pc[:, i, j], 5).indices.tolist()
    pos = np.arange(len(top))
    b.barh(pos - 0.2, Pd[top, i, j], 0.4, label="dense net, cell")
    b.barh(pos + 0.2, Pc[top, i, j], 0.4, label=f"classifier, {crop}-px crop")
    b.set_yticks(pos, [data.PRETRAIN_CLASSES[c] for c in top]); b.invert_yaxis(); b.set_xlim(0, 1)
    b.set_xlabel("probability"); b.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


c0 = present[0]
peak = divmod(int(P[0, c0].argmax()), w)
figs = viz.explore(show_cell, static=[{"i": peak[0], "j": peak[1]}, {"i": 0, "j": w - 1}],
                   i=(0, h - 1), j=(0, w - 1))
run.savefig(figs[0], "cell_on_object")
run.savefig(figs[1], "cell_corner");

# %% [markdown]
# ## 5. The efficiency claim, measured
#
# "AlexNet takes 1.2 ms to produce the classification scores of a 227×227 image, the fully convolutional
# version takes 22 ms to produce a 10×10 grid of outputs from a 500×500 image, which is more than 5 times
# faster than the naïve approach" (backward: 2.4 ms and 37 ms). We time torchvision's AlexNet
# architecture on this notebook's device: the convolutionalized net in one pass over a 500×500 image,
# against the classifier on each output cell's 224×224 window — all windows in one batch, and one window
# at a time as in the paper's arithmetic (cells × one image's time). Backward computes all weight
# gradients from the summed scores.
#
# Everything but the method is held equal, so that the ratio measures shared work and nothing else:
# the memory format (channels-last), the threads, windows cut before the clock starts, and the
# **matrix product of the fully connected layers**: the dense net's fc6–fc8 run as im2col + one GEMM
# (`fast.fc_as_gemm`, the way Caffe runs every convolution), the very GEMM the classifier's
# `nn.Linear` runs on a batch of windows.
# On a CPU both paths compute it with oneDNN (`gemm="auto"`): PyTorch's default float32 product
# goes to MKL, which on AMD processors runs its AVX2 code at well under half of oneDNN's AVX-512 rate
# (`fast.PackedGemm` says more). The backward pass uses PyTorch's own kernels.

# %%
viz.show_source(efficiency.dense_vs_naive)

# %%
bench = efficiency.dense_vs_naive(alexnet, size=bench_size, device=run.device, reps=bench_reps,
                                  single=bench_single)
ps = efficiency.paper_speedups()
ms, sp = bench["ms"], bench["speedup"]
print(f"{bench['input']}×{bench['input']} input → {bench['grid'][0]}×{bench['grid'][1]} grid; device {bench['device']}, "
      f"{bench['threads']} threads, GEMM {bench['gemm']}; best of {bench['reps']}"
      + (f"; one-by-one timed on {bench['single_timed']} of {bench['cells']} windows, scaled"
         if bench["single_timed"] < bench["cells"] else ""))
print(f"{'':10s} {'dense':>10s} {'batched':>10s} {'one by one':>11s} {'speedup b.':>11s} {'speedup 1×1':>12s}   paper")
for d in ms:
    print(f"{d:10s} {ms[d]['dense']:8.0f}ms {ms[d]['batched']:8.0f}ms {ms[d]['single']:9.0f}ms "
          f"{sp[d + '_batched']:10.2f}× {sp[d + '_single']:11.2f}×   {ps[d]:.2f}×")
print(f"FLOPs: dense {bench['gflops_dense']:.1f} G, naive {bench['gflops_naive']:.1f} G → ratio {bench['flop_ratio']:.2f}×")

# %% [markdown]
# **The paper's configuration.** The paper's numbers are for its Caffe AlexNet's 10×10 grid of 227-px
# windows (Section 2 above: unpadded conv1, pooling rounding up). The same comparison in that geometry,
# forward only; the cells of the last row and column have windows that hang 15 px off the image,
# which the naive path fills with zeros:

# %%
bench_caffe = efficiency.dense_vs_naive(alexnet, size=bench_size, device=run.device, reps=bench_reps,
                                        single=bench_single, backward=False, geometry="caffe")
print(f"{'geometry':12s} {'grid':>6s} {'window':>7s} {'FLOP ratio':>11s} {'forward, batched':>17s} "
      f"{'forward, one by one':>20s}")
for name, b in (("torchvision", bench), ("caffe", bench_caffe)):
    print(f"{name:12s} {b['grid'][0]:>3d}×{b['grid'][1]:<2d} {b['patch']:>5d}px {b['flop_ratio']:10.2f}× "
          f"{b['speedup']['forward_batched']:16.2f}× {b['speedup']['forward_single']:19.2f}×")
print(f"{'paper':12s} {ps['grid'][0]:>3d}×{ps['grid'][1]:<2d} {227:>5d}px {'':>11s} {'':>17s} {ps['forward']:19.2f}×")

# %%
fig, ax = plt.subplots(figsize=(7, 3))
labels = ["dense", "naive, batched", "naive, one by one"]
runs = [(f"{d}, {bench['grid'][0]}×{bench['grid'][1]} (torchvision)", bench["ms"][d]) for d in ms]
runs.append((f"forward, {bench_caffe['grid'][0]}×{bench_caffe['grid'][1]} (Caffe geometry)",
             bench_caffe["ms"]["forward"]))
for k, (label, t) in enumerate(runs):
    ax.barh(np.arange(3) + 0.27 * k, [t[p] for p in ("dense", "batched", "single")], 0.27, label=label)
ax.set_yticks(np.arange(3) + 0.27, labels); ax.invert_yaxis(); ax.set_xscale("log")
ax.set_xlabel(f"ms for the grid of a {bench['input']}² image ({bench['device']})")
ax.legend(fontsize=8)
run.savefig(fig, "dense_vs_naive_time");

# %%
run.record(efficiency=bench, efficiency_caffe_geometry=bench_caffe, device=bench["device"], gemm=bench["gemm"],
           speedup_forward_batched=sp["forward_batched"], speedup_forward_single=sp["forward_single"],
           speedup_backward_batched=sp["backward_batched"], speedup_backward_single=sp["backward_single"],
           flop_ratio=bench["flop_ratio"],
           speedup_forward_batched_caffe_geometry=bench_caffe["speedup"]["forward_batched"],
           speedup_forward_single_caffe_geometry=bench_caffe["speedup"]["forward_single"],
           flop_ratio_caffe_geometry=bench_caffe["flop_ratio"])
dev = f"{bench['device']}, {bench['input']}²"
run.compare("forward: dense map", round(ms["forward"]["dense"], 1), paper=ps["forward_dense_ms"], unit="ms",
            note=f"ours {dev}; paper K40c, 500²")
run.compare("forward: one window", round(ms["forward"]["single"] / bench["cells"], 2), paper=ps["forward_single_ms"],
            unit="ms", note=f"ours 224² on {bench['device']}; paper 227²")
run.compare("backward: dense map", round(ms["backward"]["dense"], 1), paper=ps["backward_dense_ms"], unit="ms", note=dev)
run.compare("backward: one window", round(ms["backward"]["single"] / bench["cells"], 2),
            paper=ps["backward_single_ms"], unit="ms", note=dev)
run.compare("forward speedup vs one window at a time", round(sp["forward_single"], 2), paper=round(ps["forward"], 2),
            unit="×", note=dev)
run.compare("backward speedup vs one window at a time", round(sp["backward_single"], 2), paper=round(ps["backward"], 2),
            unit="×", note=dev)
run.compare("forward speedup vs one window at a time, Caffe geometry",
            round(bench_caffe["speedup"]["forward_single"], 2), paper=round(ps["forward"], 2), unit="×",
            note=f"{bench_caffe['grid'][0]}×{bench_caffe['grid'][1]} grid, {dev}")
run.compare("forward speedup vs all windows batched, Caffe geometry",
            round(bench_caffe["speedup"]["forward_batched"], 2), paper=None, unit="×",
            note=f"FLOP ratio {bench_caffe['flop_ratio']:.2f}×, {dev}")
if tier != "smoke":
    assert sp["forward_batched"] > 1 and sp["forward_single"] > 2, "the dense pass should beat the naive one"
    assert bench_caffe["speedup"]["forward_batched"] > 1, "the dense pass should beat the naive one"
for cid, x, paper_x in (("s3.1.forward_speed", sp["forward_single"], ps["forward"]),
                        ("s3.1.backward_speed", sp["backward_single"], ps["backward"])):
    run.claim(cid, ours=f"{x:.1f}× ({dev})", paper=f"{paper_x:.2f}× (K40c GPU)",
              verdict=claims.measured(tier, x >= paper_x, partly=x > 1),
              why=f"{x:.1f}× on this {bench['device']}, the paper {paper_x:.2f}× on a GPU: the ratio depends on the device")


# %% [markdown]
# **Why this ratio? Count the FLOPs.** `torch.utils.flop_counter.FlopCounterMode` (through
# `efficiency.flops`, the course's one FLOP counter) counts every
# convolution and matrix product (a multiply-add is 2 FLOPs). The convolutional layers are where the
# windows overlap: a 224-px window at stride 32 shares most of its pixels with its neighbours, and the
# dense pass computes each shared feature once. The fully connected layers do the *same* work in both
# paths — one fc6/fc7/fc8 evaluation per output cell — so they bound the ratio: with $F_c$ the
# convolutions' and $F_f$ the fully connected layers' FLOPs, the ratio is
# $(F_c^{naive} + F_f) / (F_c^{dense} + F_f)$, far below the convolutions' own ratio.

# %%
def layer_flops(model, shape):
    per_module = efficiency.flops(model, shape, per_module=True)      # {module name: FLOPs}
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    fcs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) or n.startswith("fc")]
    named = [(f"conv{i + 1}", n) for i, n in enumerate(c for c in convs if not c.startswith("fc"))]
    named += [(f"fc{i + 6}", n) for i, n in enumerate(fcs)]
    return {k: per_module.get(n, 0) for k, n in named}


fd = layer_flops(dense, (1, 3, bench_size, bench_size))
fn = {k: v * bench["cells"] for k, v in layer_flops(alexnet, (1, 3, 224, 224)).items()}
print(f"{'layer':6s} {'dense GFLOP':>12s} {'naive GFLOP':>12s} {'ratio':>7s}")
for k in fd:
    print(f"{k:6s} {fd[k] / 1e9:12.2f} {fn[k] / 1e9:12.2f} {fn[k] / fd[k]:7.2f}")
conv_ratio = sum(v for k, v in fn.items() if k.startswith("conv")) / sum(v for k, v in fd.items() if k.startswith("conv"))
fc_share = sum(v for k, v in fd.items() if k.startswith("fc")) / sum(fd.values())
print(f"convolutions alone: {conv_ratio:.1f}×;  whole net: {sum(fn.values()) / sum(fd.values()):.2f}×;  "
      f"fc6–fc8 are {fc_share:.0%} of the dense pass's FLOPs")
print(f"measured forward speedup (batched) / FLOP ratio = {sp['forward_batched'] / bench['flop_ratio']:.2f}: "
      + ("the dense pass did more FLOPs per second than the batched windows"
         if sp["forward_batched"] > bench["flop_ratio"] else "the dense pass did fewer FLOPs per second"))
run.record(flop_ratio_convolutions=conv_ratio, gflops_per_layer={"dense": {k: v / 1e9 for k, v in fd.items()},
                                                                 "naive": {k: v / 1e9 for k, v in fn.items()}},
           fc_share_of_dense_flops=fc_share);

# %% [markdown]
# When both paths run at the same FLOP rate, the batched ratio *is* the FLOP ratio; the printout above
# says which side was faster per FLOP on this machine. The dense pass's convolutions work on one
# large image instead of a batch of 81 small ones, and its fc6 needs an im2col copy the classifier
# does not; on a GPU, small kernels also pay a launch cost each. With MKL's slower GEMM in both paths
# (`gemm="default"`), the shared fully connected work grows and the ratio shrinks toward 1 — try it.
# One window at a time is far slower still: per-call overhead, and the fully connected layers read
# their 230 MB of weights once per *window* instead of once per image — the regime of the paper's
# comparison (its ratio is cells × one image's time). The backward pass repeats the pattern (the
# weight gradient of fc6 is a 151 MB outer product per call). benchmarks/bench_convolutionalize.py
# measures all of this with several rounds, settings and both geometries.

# %% [markdown]
# ## 6. Exercises

# %% [markdown]
# **6.1** VGG16's pool5 has 512 channels on a 7×7 grid and fc6 has 4096 outputs. What is the shape of
# the weight of fc6 as a convolution? (a tuple)

# %%
answer = None  # ✏️ your answer here
exercises.check("01.fc6_weight", answer);

# %% [markdown]
# **6.2** AlexNet's fc6 has a weight of shape (4096, 9216). Which column of it multiplies pool5's
# channel 3 at row 2, column 5 (all zero-based)?

# %%
answer = None  # ✏️ your answer here
exercises.check("01.flatten_column", answer);

# %% [markdown]
# **6.3** How large a grid (rows, columns) does the convolutionalized torchvision AlexNet give for a
# 480-row, 640-column image? Work it out with the layer arithmetic, then check with `dense.grid`.

# %%
answer = None  # ✏️ your answer here
exercises.check("01.grid", answer);

# %% [markdown]
# **6.4 (code).** Write the lesson of §3.1 yourself: `linear_to_conv(linear, in_channels, kernel_size)`
# returns an `nn.Conv2d` that computes the fully connected layer `linear` on every k×k window of a
# C-channel map. The check runs your convolution and `fcnlib.convolutionalize.linear_to_conv`'s on a map
# two cells wider than the layer's input (a 3×3 grid of outputs) for three layers.

# %%
def linear_to_conv(linear, in_channels, kernel_size):
    raise NotImplementedError  # ✏️ your code here


exercises.check_function("01.linear_to_conv", linear_to_conv)

# %% [markdown]
# ## 7. The real thing (`paper` tier): ImageNet AlexNet on a photo
#
# With torchvision's ImageNet weights in torch.hub's cache, the same code turns the real AlexNet into
# a heatmap of ImageNet classes over a PASCAL VOC photo (500×334, a person on a bicycle).

# %%
if tier == "paper":
    from PIL import Image
    weights_path = Path(torch.hub.get_dir()) / "checkpoints" / "alexnet-owt-7be5be79.pth"
    tiers.require({"ImageNet AlexNet weights": weights_path},
                  how="Copy torchvision's alexnet-owt-7be5be79.pth into torch.hub's cache "
                      f"({weights_path.parent}); the course never downloads at run time.")
    meta = torchvision.models.AlexNet_Weights.IMAGENET1K_V1
    alexnet_in = torchvision.models.alexnet()
    alexnet_in.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    dense_in = cv.convolutionalize(alexnet_in).eval().to(run.device)
    photo = Image.open(paths.reference_dir() / "demo" / "image.jpg").convert("RGB")
    tf = meta.transforms()
    xp = torchvision.transforms.functional.to_tensor(photo)
    xp = torchvision.transforms.functional.normalize(xp, tf.mean, tf.std)[None].to(run.device)
    with torch.no_grad():
        pp = dense_in(xp).softmax(1)[0].cpu()                             # (1000, h, w)
    top = pp.amax((1, 2)).topk(3).indices.tolist()
    hh, ww = pp.shape[-2:]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    axes[0].imshow(photo); axes[0].set_title("photo")
    c0 = (224 - 1) / 2
    ext = (c0 - 16, c0 + (ww - 0.5) * 32, c0 + (hh - 0.5) * 32, c0 - 16)
    for ax, c in zip(axes[1:], top):
        ax.imshow(photo); heat = ax.imshow(pp[c], extent=ext, alpha=0.6, cmap="magma", vmin=0, vmax=1)
        ax.set_xlim(0, photo.width); ax.set_ylim(photo.height, 0)
        ax.set_title(meta.meta["categories"][c])
    for ax in axes:
        ax.axis("off")
    fig.colorbar(heat, ax=list(axes[1:]), fraction=0.015, pad=0.01, label="class probability of the cell")
    run.savefig(fig, "imagenet_alexnet_heatmaps")
    run.record(imagenet_top_classes=[meta.meta["categories"][c] for c in top], imagenet_grid=[hh, ww])
else:
    print("(runs in the `paper` tier, with ImageNet weights from the local cache)")

# %% [markdown]
# ## Summary
#
# A fully connected layer over a C×k×k map is a k×k convolution with the same weights, so a
# convolutionalized classifier answers for every window of a larger input in one pass; its cells equal the
# classifier on their crops exactly where no padding reaches them. The dense pass shares the overlapping
# windows' work: the FLOP count predicts how much
# cheaper it is, and the timings are recorded beside that prediction.
#
# **Next:** [02 · Receptive fields](02_receptive_field.ipynb).

# %%
run.finish();
