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
# # 02 · Receptive fields, strides, and where the maps line up (§3, Table 1)
#
# *"Locations in higher layers correspond to the locations in the image they are path-connected
# to, which are called their receptive fields"* (Section 3). An FCN's output is a grid of such
# locations; to fuse two grids (the skips of Section 4.2) or to lay the last one over the image, we
# must know exactly which pixels each unit sees and where its centre lands. This notebook computes
# that for every layer of a network — by the paper's composition rule, on the real module graph —
# and checks the arithmetic against gradients.
#
# * **field size** $r$: how many input pixels (per side) a unit can depend on;
# * **jump** $j$: input pixels between neighbouring units (the *stride* of Table 1);
# * **centre** $c$: where unit 0's window is centred, in input pixels. Caffe's convention, which the
#   reference implementation uses to place its crops: *input coordinate = j · u + c* for unit u.
#
# Section 3 writes a layer as $f_{ks}$ (kernel $k$, stride $s$) and composes two of them:
# $f_{ks} \circ g_{k's'} = (f \circ g)_{k' + (k-1)s',\ ss'}$ — each layer widens the field by
# $(k-1)$ jumps of the layers below, and the jumps multiply.

# %% [markdown]
# **You will learn:** §3's rule for composing layers into receptive-field size, jump and centre;
# coordinate maps and the crop offsets of the skip architecture; checking the arithmetic against
# gradients; Table 1's fields and strides.
#
# **It assumes:** notebook 01; convolution arithmetic (kernel, stride, padding, dilation).
#
# **Time on a 2-core CPU:** about 15 s in the default (embedded) tier.

# %% tags=["parameters"]
tier = "embedded"   # smoke | embedded | paper
device = "auto"     # auto | cuda | mps | cpu
seed = 0
solutions = False   # True: unattempted exercises are answered from the instructor key (batch runs)
results_dir = None  # None: <repo>/results (or $FCN_RESULTS)

# %%
import copy
import time
from fractions import Fraction

import matplotlib.pyplot as plt
import numpy as np
import torch
import torchvision
from IPython.display import Markdown, display
from torch import nn

import fcnlib
from fcnlib import claims, data, exercises, field_algebra, models, paper, rf_check, tiers, transplant, viz
from fcnlib import receptive_field as rf

run = fcnlib.start_run("02_receptive_field", tier=tier, device=device, seed=seed, results_dir=results_dir)
per_layer = tiers.pick(tier, smoke=1, embedded=3)        # units checked per layer against gradients
big_checks = tiers.pick(tier, smoke=("FCN-AlexNet",), embedded=("FCN-AlexNet", "FCN-32s", "FCN-GoogLeNet"))
sizes = range(1, 1025)                                   # input sizes swept for misalignment
scene_size = tiers.pick(tier, smoke=64, embedded=96)     # px, the widget's scene
table1 = paper.table1()                                  # Table 1, read from PAPER-FACTS.md
ref_crops = paper.crop_offsets()                         # the reference implementation's crops
run

# %% [markdown]
# ## 1. The rule, by hand
#
# Take a small net: conv 3×3 (padding 1), max-pool 2×2 /2, conv 3×3 (padding 1), max-pool 2×2 /2,
# conv 3×3 with dilation 2 (padding 2). A dilated kernel of $k$ taps spans $d(k-1)+1$ pixels; call
# that $k$ again. Layer by layer, starting from a pixel ($r = 1$, $j = 1$, $c = 0$):
#
# $$r \leftarrow r + (k-1)\,j, \qquad c \leftarrow c + \Big(\tfrac{k-1}{2} - p\Big)\,j, \qquad j \leftarrow j\,s .$$
#
# The first line is Section 3's rule; the second moves the centre to the middle of the window,
# minus the padding (a padded layer's unit 0 is centred *before* the image's first pixel would be).

# %%
tiny = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
                     nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
                     nn.Conv2d(8, 8, 3, padding=2, dilation=2))
by_hand = []
r, j, c = 1, 1, Fraction(0)
for name, k, s, p in [("conv 3×3", 3, 1, 1), ("pool 2×2", 2, 2, 0), ("conv 3×3", 3, 1, 1),
                      ("pool 2×2", 2, 2, 0), ("conv 3×3 dil 2", 2 * (3 - 1) + 1, 1, 2)]:
    r, c, j = r + (k - 1) * j, c + (Fraction(k - 1, 2) - p) * j, j * s
    by_hand.append((name, r, j, c))
ours = [x for x in rf.receptive_fields(tiny) if x.op not in ("ReLU", "input")]
lines = ["| layer | r (hand) | j (hand) | c (hand) | r | j | c | field of unit 0 |", "|---|---|---|---|---|---|---|---|"]
for (name, r, j, c), x in zip(by_hand, ours):
    lines.append(f"| {name} | {r} | {j} | {c} | {x.rf} | {x.jump} | {x.centre} | [{x.first[0]}, {x.first[1]}] |")
display(Markdown("\n".join(lines)))
assert [(r, j, c) for _, r, j, c in by_hand] == [(x.rf, x.jump, x.centre) for x in ours], "library ≠ hand"

# %% [markdown]
# `fcnlib.receptive_field` does the same per axis, but keeps more than three numbers: the exact
# field $[lo, hi]$ of every unit. After an upsampling (a transposed convolution) units no longer all
# see the same amount of input — the pattern repeats with a period — and at a skip two branches
# meet. The rule itself is one line:

# %%
viz.show_source(rf.compose)

# %% [markdown]
# and here it is applied to a convolution or pooling layer (`fcnlib.field_algebra`, the per-layer
# rules the graph walk uses): unit $u$ reads units $s u - p + d t$, $0 \le t < k$, of the map below,
# so its field is the union of theirs.

# %%
viz.show_source(field_algebra.Axis.window)


# %% [markdown]
# The network is walked as a *graph* (traced with `torch.fx`), not as a list of layers, so a skip
# or an inception module comes out right. Where branches meet (an addition, a concatenation of
# channels), unit $u$ of the result reads unit $u$ of every branch: its field is the **union** —
# from the smallest $lo$ to the largest $hi$. Branches whose jumps differ cannot meet (an error);
# branches whose centres differ are marked *unaligned* (they sum units that sit at different
# places — the bug that the crops of Section 4.2 prevent).

# %% [markdown]
# ## 2. Table 1: the classifiers' receptive fields
#
# We build the three classifiers from torchvision's modules on the `meta` device (no weights, no
# memory: only the geometry matters), convolutionalized as in Section 3.1: fc6 becomes a
# convolution over the grid it read (6×6 for AlexNet, 7×7 for VGG16), fc7 a 1×1 convolution.
# GoogLeNet needs care: torchvision's is not the paper's. Its "5×5" inception branch uses 3×3
# convolutions and its pool4 is 2×2; we also rebuild Caffe's geometry (5×5 branch, 3×3 pool4, and
# the 7×7 average pool `pool5/7x7_s1`).

# %%
nets = transplant.table1_nets()                          # meta device: geometry only
fields = {name: rf.receptive_fields(net, 224) for name, net in nets.items()}
tv_googlenet = rf.receptive_fields(transplant.table1_nets(googlenet="torchvision")["FCN-GoogLeNet"], 224)


def layer_table(net, rows, paper_rf):
    """Conv and pool rows; Table 1's field size beside the last layer (fc7)."""
    rows = [x for x in rows if x.op in ("Conv2d", "MaxPool2d")]
    lines = ["| layer | type | k / s / p | field size r | jump j | centre c | field of unit 0 | paper |",
             "|---|---|---|---|---|---|---|---|"]
    for x in rows:
        m = net.get_submodule(x.name)
        ksp = "/".join(str(v if isinstance(v, int) else v[0]) for v in (m.kernel_size, m.stride, m.padding))
        lines.append(f"| {x.name} | {x.op} | {ksp} | {x.rf} | {x.jump} | {x.centre} | "
                     f"[{x.first[0]}, {x.first[1]}] | {f'{paper_rf:.0f}' if x is rows[-1] else ''} |")
    return Markdown("\n".join(lines))


for name in ("FCN-AlexNet", "FCN-VGG16"):
    display(Markdown(f"**{name}**: torchvision's `features`, then `fc6` and `fc7` as convolutions "
                     "(`convolutionalize`, decapitated)"))
    display(layer_table(nets[name], fields[name], table1[name]["rf size"]))

# %% [markdown]
# Which layer has the paper's number? Not pool5: its field is 195 (AlexNet) and 212 (VGG16). The
# paper's 355 and 404 are the fields of **fc6** — a 6×6 or 7×7 convolution at jump 32 adds
# 5·32 or 6·32 pixels — and so of fc7 and the score layer after it (1×1 convolutions add nothing).

# %%
summary = {name: {"rf": rows[-1].rf, "max_stride": int(max(x.jump for x in rows))}
           for name, rows in fields.items()}
pool5_rf = {name: [x for x in fields[name] if x.op == "MaxPool2d"][-1].rf for name in ("FCN-AlexNet", "FCN-VGG16")}
fc6_rf = {name: [x for x in fields[name] if x.op == "Conv2d"][-2].rf for name in ("FCN-AlexNet", "FCN-VGG16")}
print("pool5:", pool5_rf, " fc6:", fc6_rf)
assert fc6_rf == {n: summary[n]["rf"] for n in fc6_rf}, "the paper's number is fc6's field"
tv = {"inception5b": tv_googlenet[-2].rf, "with_global_pool_224": tv_googlenet[-1].rf}
caffe5b = fields["FCN-GoogLeNet"][-2].rf
lines = ["| network | rf size (ours) | rf size (paper) | max stride (ours) | max stride (paper) |", "|---|---|---|---|---|"]
for name, s in summary.items():
    lines.append(f"| {name} | {s['rf']} | {table1[name]['rf size']:.0f} | {s['max_stride']} | {table1[name]['max stride']:.0f} |")
    run.compare(f"rf size {name}", s["rf"], table1[name]["rf size"], "px")
    run.compare(f"max stride {name}", s["max_stride"], table1[name]["max stride"], "px")
lines.append(f"| GoogLeNet, torchvision's | {tv['inception5b']} at inception5b, {tv['with_global_pool_224']} "
             "with its global pool at 224 px | – | 32 | – |")
display(Markdown("\n".join(lines)))
print(f"Caffe GoogLeNet: {caffe5b} px at inception_5b, {summary['FCN-GoogLeNet']['rf']} px after pool5/7x7_s1")
for name, s in summary.items():
    assert s["rf"] == table1[name]["rf size"] and s["max_stride"] == table1[name]["max stride"], name
run.claim("table1.rf", ours={n: s["rf"] for n, s in summary.items()},
          paper={n: int(table1[n]["rf size"]) for n in summary},
          verdict=claims.exact(all(s["rf"] == table1[n]["rf size"] for n, s in summary.items())))
run.claim("table1.stride", ours={n: s["max_stride"] for n, s in summary.items()},
          paper={n: int(table1[n]["max stride"]) for n in summary},
          verdict=claims.exact(all(s["max_stride"] == table1[n]["max stride"] for n, s in summary.items())))

# %% [markdown]
# With the BVLC Caffe GoogLeNet's geometry (the paper used its own implementation), 907 is the
# field *after* the 7×7 average pool `pool5/7x7_s1` (6 more jumps of 32); at the last inception
# module it is smaller, as printed above. Section 4.1 says *"we use only the final loss layer, and
# improve performance by discarding the final average pooling layer"*: so Table 1's 907 appears to
# describe the classifier's last layer rather than the FCN's. torchvision's GoogLeNet, with 3×3
# convolutions where Caffe's has 5×5 and a 2×2 pool4, sees much less. All three reach stride 32:
# five stride-2 stages.

# %% [markdown]
# ## 3. Coordinate maps and the reference crop offsets
#
# The reference FCNs pad conv1_1 by 100 and pool in ceil mode, then crop each skip's scores to the
# size of the map they are added to, and the final scores to the image. Where to start the crop?
# Caffe's `coord_map.py` follows each map's *coordinate map* — the centre of unit $u$ in input
# pixels, $j\,u + c$ — from the common input. If the map to crop (bottom, $j_b$, $c_b$) and the
# reference ($j_r$, $c_r$) have the same jump, reference unit 0 sits on bottom unit
# $(c_r - c_b)/j_b$: that is the crop offset. It must be a whole number, and not negative.

# %%
viz.show_source(rf.crop_offset)


# %% [markdown]
# The six offsets of the reference implementation, derived again from the course's own full-width
# VGG16 FCN-32s, -16s and -8s (`transplant.fcn32s()` …, built on the meta device: conv1_1 padding 100,
# ceil-mode pooling, fc6 7×7, score layers 1×1 to 21 classes, upsampling by transposed convolutions of
# kernel 2f and stride f). Each net names the two module paths of every crop it makes:

# %%
with torch.device("meta"):                               # full-width VGG16 FCNs, geometry only
    reference = {f"fcn{v}": getattr(transplant, f"fcn{v}")() for v in ("32s", "16s", "8s")}
viz.show_source(models.FCN.crop_paths)
crops = {net: {k: rf.crop_offset(b, r) for k, (b, r) in m.crop_paths().items()} for net, m in reference.items()}
lines = ["| net | crop | offset (ours) | offset (reference) | bottom map: jump, centre | reference map: jump, centre |",
         "|---|---|---|---|---|---|"]
for net, m in reference.items():
    for k, (b, r) in m.crop_paths().items():
        (jb, cb), (jr, cr) = rf.coord_map(b), rf.coord_map(r)
        lines.append(f"| {net} | {k} | {crops[net][k]} | {ref_crops[net][k]} | {jb}, {cb} | {jr}, {cr} |")
        run.compare(f"crop offset {net} {k}", crops[net][k], ref_crops[net][k], "px")
display(Markdown("\n".join(lines)))
assert crops == ref_crops, "the derived offsets differ from the reference implementation's"
run.claim("s4.2.crops", ours=crops, paper=ref_crops, verdict=claims.exact(crops == ref_crops))

# %% [markdown]
# ## 4. Why conv1 is padded by 100, and why pooling rounds up
#
# **Without the padding**, the first score unit's window starts inside the image. With VGG16's own
# padding of 1, the upsampled scores' unit 0 sits well inside the image (the cell below says
# where): the crop would have to be *negative*, i.e. the score map does not cover the image's first
# rows and columns at all.

# %%
def with_layers(net, pad=100, ceil=True):
    """A copy of ``net`` with conv1_1 padded by ``pad`` and every max pooling in ceil (or floor) mode."""
    net = copy.deepcopy(net)
    next(m for m in net.modules() if isinstance(m, nn.Conv2d)).padding = (pad, pad)
    for m in net.modules():
        if isinstance(m, nn.MaxPool2d):
            m.ceil_mode = ceil
    return net


p1 = with_layers(reference["fcn32s"], pad=1).paths()
jump, centre = rf.coord_map(p1["upscore"])
offset_pad1 = int(-centre / jump)
try:
    rf.crop_offset(p1["upscore"], [])
except rf.GeometryError as e:
    print("GeometryError:", e)
print(f"conv1_1 padding 1: FCN-32s upscore unit 0 at pixel {centre}, crop offset {offset_pad1}")
assert offset_pad1 < 0

# %% [markdown]
# The padding also makes every input size produce a score map: the 100 extra pixels on each side
# carry even a tiny image through five poolings and fc6's 7×7 window.
#
# **Rounding down** breaks alignment for some input sizes. Fix the crop offsets (they do not depend
# on the input size) and call an input size $n$ *misaligned* for a net when one of its crops does
# not fit: some map on the way is empty, or the crop offset plus the size of the map it is aligned
# with exceeds the size of the map being cropped. For a skip that means the two maps to be summed
# cannot be made the same size; for the final crop, that the score map is shorter than the image.
# We count misaligned sizes among $n = 1 \dots 1024$, with ceil-mode pooling (the reference) and with
# floor-mode pooling (PyTorch's default):

# %%
viz.show_source(rf.misaligned_sizes)

# %%
t0 = time.perf_counter()
misaligned = {}
for mode, ceil in (("ceil", True), ("floor", False)):
    misaligned[mode] = {net: rf.misaligned_sizes(list(with_layers(m, ceil=ceil).crop_paths().values()), sizes)
                        for net, m in reference.items()}
counts = {mode: {net: len(v) for net, v in m.items()} for mode, m in misaligned.items()}
print(f"({time.perf_counter() - t0:.1f} s)")
lines = ["| pooling | FCN-32s | FCN-16s | FCN-8s |", "|---|---|---|---|"]
for mode in counts:
    lines.append(f"| {mode} | " + " | ".join(str(counts[mode][n]) for n in ("fcn32s", "fcn16s", "fcn8s")) + " |")
display(Markdown(f"Misaligned input sizes among 1…{len(sizes)}:\n\n" + "\n".join(lines)))
no_output = next(n for n in sizes if n not in misaligned["floor"]["fcn8s"]) - 1
print(f"floor mode: sizes 1…{no_output} give no fc6 output at all; beyond that FCN-16s misaligns at "
      + ", ".join(str(n) for n in misaligned["floor"]["fcn16s"] if no_output < n < no_output + 70) + ", …")
assert all(v == 0 for v in counts["ceil"].values()), "ceil-mode pooling must fit every size"
assert all(v > 0 for v in counts["floor"].values())

# %%
fig, ax = plt.subplots(figsize=(10, 2.2))
for i, net in enumerate(("fcn32s", "fcn16s", "fcn8s")):
    bad = np.array(misaligned["floor"][net])
    ax.scatter(bad, np.full(len(bad), i), marker="|", s=60, color="#EE6677")
ax.set_yticks(range(3), ["FCN-32s", "FCN-16s", "FCN-8s"])
ax.set_xlabel("input size n (px)"); ax.set_xlim(0, len(sizes) + 1)
ax.set_title("floor-mode pooling: misaligned input sizes (ceil mode: none)")
fig.tight_layout()
run.savefig(fig, "misaligned_sizes_floor")

# %% [markdown]
# Why periodic? With floor pooling each stage drops the pixels that do not fill a last window, so
# the stride-32 map ends up to 31 px short of where ceil mode would take it, depending on
# $n \bmod 32$. The only slack at the far end of the final crop is the crop offset itself (the
# map overhangs the image by that much), so a net misaligns for the remainders its offset cannot
# absorb — a fixed number of sizes in every period of 32:

# %%
period = range(513, 513 + 32)
per_period = {net: sum(n in set(misaligned["floor"][net]) for n in period) for net in crops}
for net in crops:
    print(f"{net}: final crop offset {crops[net]['final']:2d} px → misaligned at {per_period[net]:2d} of "
          f"every 32 input sizes (floor mode)")
assert per_period["fcn32s"] >= per_period["fcn16s"] >= per_period["fcn8s"]

# %% [markdown]
# Rounding up keeps a partial window instead of dropping it, so the maps always reach past the
# image's end and every crop fits.

# %% [markdown]
# ## 5. Theory against gradients
#
# Which input pixels does one output unit really depend on? Ask autograd: the *support* of the
# gradient of that unit with respect to the input. On a real net, cancellations, ReLUs that are off
# and max-pooling (which passes the gradient to one input per window only) make the support a
# sparse subset of the field. So we check the theory on the net's **linear twin**: the same graph
# and geometry, one channel, positive weights, identity activations, average instead of max
# pooling, float64 — then nothing cancels and the support *is* the field. We compare bounding boxes
# for units that read no padding anywhere (near the border, padding's zeros cut the support), for
# every layer that changes the geometry (for GoogLeNet: every inception module's output and every
# pooling, which is where its branches meet).

# %%
viz.show_source(rf_check.linear_twin)


# %%
small = {
    "dilated": (nn.Sequential(nn.Conv2d(1, 4, 3, padding=2, dilation=2), nn.ReLU(), nn.Conv2d(4, 4, 3, dilation=3),
                              nn.MaxPool2d(2, 2), nn.Conv2d(4, 1, 3, dilation=2)), 48, None),
    "upsampling (k ∤ s)": (nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.MaxPool2d(3, 3, ceil_mode=True),
                                         nn.ConvTranspose2d(2, 2, 5, stride=3), nn.ReLU(),
                                         nn.ConvTranspose2d(2, 1, 3, stride=2, padding=1)), 64, None),
    "FCN-8s (skips)": (reference["fcn8s"], 480, None),
}
inception_outputs = [x.node for x in fields["FCN-GoogLeNet"] if x.op in ("cat", "MaxPool2d", "AvgPool2d")
                     and not x.name.startswith("inception")]  # the inception modules' outputs and the pools
big = {"FCN-AlexNet": (nets["FCN-AlexNet"], 380, None), "FCN-32s": (nn.Sequential(*rf.leaves(reference["fcn32s"].paths()["upscore"])), 460, None),
       "FCN-GoogLeNet": (nets["FCN-GoogLeNet"], 960, inception_outputs)}
to_check = {**small, **{k: big[k] for k in big_checks}}
t0 = time.perf_counter()
checks = {name: rf_check.empirical_check(net, size, nodes=nodes, per_layer=per_layer)
          for name, (net, size, nodes) in to_check.items()}
print(f"({time.perf_counter() - t0:.1f} s)")
lines = ["| net | input px | layers checked | units checked | theory = gradient support |", "|---|---|---|---|---|"]
for name, cs in checks.items():
    lines.append(f"| {name} | {to_check[name][1]} | {len({c['node'] for c in cs})} | {len(cs)} | "
                 f"{'all' if all(c['match'] for c in cs) else 'NOT all'} |")
display(Markdown("\n".join(lines)))
n_layers = sum(len({c["node"] for c in cs}) for cs in checks.values())
n_units = sum(len(cs) for cs in checks.values())
all_match = all(c["match"] for cs in checks.values() for c in cs)
deepest = {name: max(cs, key=lambda c: c["field_px"]) for name, cs in checks.items()}
for name, c in deepest.items():
    print(f"{name:20s} widest field checked: {c['node']} unit {c['unit']}: theory {c['theory']}, gradient {c['empirical']}")
assert all_match, [c for cs in checks.values() for c in cs if not c["match"]][:3]

# %% [markdown]
# With dilation the field has holes: a first-layer 3×3 kernel of dilation 2 spans 5×5 pixels but
# touches 9 of them (the boxes match, the pixel counts do not). After an upsampling whose kernel
# the stride does not divide, neighbouring output units have fields of different sizes; the exact
# per-unit fields are what is checked. In the max-pooling net itself the support shrinks:

# %%
maxnet, msize, _ = small["dilated"]
lin = rf_check.empirical_check(maxnet, msize, per_layer=3)
mx = rf_check.empirical_check(maxnet, msize, per_layer=3, keep_max=True)
for a, b in zip(lin, mx):
    if a["node"] == lin[-1]["node"]:
        print(f"unit {a['unit']}: field {a['field_px']} px, linear twin's support {a['support_px']} px, "
              f"with max pooling {b['support_px']} px")
shrink = [b["support_px"] / a["support_px"] for a, b in zip(lin, mx) if a["node"] == lin[-1]["node"]]
assert all(b["inside"] for b in mx) and max(shrink) < 1

# %% [markdown]
# ## 6. See it: the field of one output cell
#
# A small net on one of the course's scenes: conv 3×3, pool, conv 3×3, pool, dilated conv, 1×1
# scores (stride 4). Slide to an output cell: the box is its theoretical field (clipped to the
# image), the left overlay the gradient support of the linear twin, the right one that of the same
# net with max pooling kept. The dot is the cell's centre from the coordinate map.

# %%
scene = data.EmbeddedScenes("val", n=1, size=scene_size, seed=seed).raw(0)[0].permute(1, 2, 0).numpy()
course_net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
                           nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
                           nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.ReLU(), nn.Conv2d(16, 21, 1))
geo = {axis: rf.receptive_fields(course_net, scene_size, axis=axis)[-1] for axis in (0, 1)}
twins = {"linear twin": rf_check.linear_twin(course_net), "max pooling kept": rf_check.linear_twin(course_net, keep_max=True)}
last = str(len(course_net) - 1)
print(f"output grid {geo[0].size}×{geo[1].size}, field {geo[0].rf} px, jump {geo[0].jump}, centre of cell 0 at {geo[0].centre}")


def draw(row, col):
    (lo_h, hi_h), (lo_w, hi_w) = geo[0].field(row), geo[1].field(col)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.2))
    for ax, (name, twin) in zip(axes, twins.items()):
        mask = rf_check.gradient_support(twin, last, (row, col), scene.shape[:2], seed=seed).numpy()
        ax.imshow(scene)
        ax.imshow(np.ma.masked_where(~mask, mask), cmap="autumn", alpha=0.55, vmin=0, vmax=1)
        box = (max(lo_w, 0) - 0.5, max(lo_h, 0) - 0.5)
        ax.add_patch(plt.Rectangle(box, min(hi_w, scene_size - 1) - box[0] + 0.5,
                                   min(hi_h, scene_size - 1) - box[1] + 0.5, fill=False, ec="cyan", lw=2))
        ax.plot(float(geo[1].jump * col + geo[1].centre), float(geo[0].jump * row + geo[0].centre), "o", color="cyan")
        ax.set_title(f"{name}: {int(mask.sum())} px (field {(hi_h - lo_h + 1) * (hi_w - lo_w + 1)} px, "
                     "padding included)", fontsize=9)
        ax.set_xlim(-0.5, scene_size - 0.5); ax.set_ylim(scene_size - 0.5, -0.5); ax.axis("off")
    fig.suptitle(f"cell ({row}, {col}): field rows [{lo_h}, {hi_h}], columns [{lo_w}, {hi_w}]", fontsize=10)
    fig.tight_layout()
    return fig


mid = geo[0].size // 2
figs = viz.explore(draw, static=[{"row": 0, "col": 0}, {"row": mid, "col": mid - 3}],
                   row=(0, geo[0].size - 1), col=(0, geo[1].size - 1))
run.savefig(figs[0], "field_corner_cell")
run.savefig(figs[1], "field_centre_cell")

# %% [markdown]
# The corner cell's field reaches into the padding: only its in-image part is drawn, and there the
# support fills it. With max pooling kept, the gradient flows through one input of each pooling
# window only, so the support is a scattered subset of the field — the theoretical field is an upper
# bound on what a unit of a real net looks at.

# %% [markdown]
# ## 7. What the analysis refuses
#
# A layer it does not know is an error that names it and says what to do — never a guess. So is
# geometry that depends on the input: adaptive pooling (torchvision's AlexNet and VGG16 end their
# convolutions with one) is exact only for an input size at which its windows are even, so it needs
# `input_shape`; a flatten or a fully connected layer has no spatial geometry at all.

# %%
for what, call in [("nn.Upsample", lambda: rf.receptive_fields(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Upsample(scale_factor=2)))),
                   ("AlexNet's adaptive pooling, no input size", lambda: rf.receptive_fields(torchvision.models.alexnet(), upto="avgpool")),
                   ("AlexNet's classifier", lambda: rf.receptive_fields(torchvision.models.alexnet(), 224))]:
    with torch.device("meta"):
        try:
            call()
            raise AssertionError(f"{what} was accepted")
        except rf.GeometryError as e:
            print(f"{what}:\n    {e}\n")
with torch.device("meta"):
    at224 = rf.receptive_fields(torchvision.models.alexnet(), 224, upto="avgpool")[-1]
print(f"with input_shape=224 the adaptive pooling is an identity (6 → 6): field {at224.rf}, size {at224.size}")

# %% [markdown]
# ## 8. Exercises
#
# **02.tiny_rf.** What are the field size and the jump of the last layer of this net? Answer a tuple
# `(size, jump)`.

# %%
exercises.load("02", key=solutions)
from fcnlib.exercise_bank import ex02
print(ex02.tiny_net())

# %%
answer = None  # ✏️ your answer here, e.g. (10, 2)
exercises.check("02.tiny_rf", answer)

# %% [markdown]
# **02.crop_offset.** A small FCN: the path below ends with a 2× upsampling back to the image's
# stride. At which offset must its output be cropped to line up with the image?

# %%
print(ex02.tiny_fcn_paths()[0])

# %%
answer = None  # ✏️ your answer here (an integer)
exercises.check("02.crop_offset", answer)

# %% [markdown]
# **02.vgg_fc6.** Without the library: the receptive field of FCN-VGG16's fc6 (Table 1's 404).

# %%
answer = None  # ✏️ your answer here (an integer)
exercises.check("02.vgg_fc6", answer)

# %% [markdown]
# **Exercise 4 (code).** Write §3's rule: `field_size(net)` takes an `nn.Sequential` of convolutions,
# max-poolings and pointwise layers and returns the last layer's (receptive-field size, jump) as a
# tuple. Checked against `fcnlib.receptive_field.receptive_fields` on three nets (one with a dilation).

# %%
def field_size(net):
    raise NotImplementedError  # ✏️ your code here


exercises.check_function("02.field_size", field_size)

# %% [markdown]
# ## 9. Record

# %%
run.record(
    rf_size={name: s["rf"] for name, s in summary.items()},
    rf_fc6=fc6_rf, rf_pool5=pool5_rf,
    max_stride={name: s["max_stride"] for name, s in summary.items()},
    googlenet_caffe_inception5b_rf=caffe5b,
    googlenet_torchvision_rf=tv,
    crop_offsets=crops,
    final_crop_offset_with_conv1_padding_1=offset_pad1,
    empirical_all_match=all_match, empirical_layers_checked=n_layers, empirical_units_checked=n_units,
    empirical_nets=list(checks),
    misaligned_sizes_1_to_1024=counts, misaligned_per_32_sizes_floor=per_period,
)

# %% [markdown]
# ## Summary
#
# Every unit of a convnet sees a window of the input whose size, spacing and centre follow from the layers
# by §3's rule; the crops that line up the FCN's maps are differences of such centres, and the gradient of
# a unit outlines exactly the field the rule predicts.
#
# **Next:** [03 · Dense prediction](03_dense_prediction.ipynb).

# %%
run.finish()
