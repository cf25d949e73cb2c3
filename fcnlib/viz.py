"""Pictures for the course: label palettes, overlays, source listings, widgets with a static twin;
Fig. 3 drawn from the modules themselves, score maps on the image grid, training curves."""
from __future__ import annotations

import inspect

import numpy as np
import torch

from .data import CLASSES, VOID, denormalize

# Paul Tol's colour-blind-safe qualitative schemes (bright, muted, light), background black.
_TOL = ["#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#BBBBBB",
        "#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255",
        "#AA4499", "#77AADD", "#EE8866", "#EEDD88", "#FFAABB", "#AAAA00"]


def voc_palette(n: int = 256) -> np.ndarray:
    """PASCAL VOC's label colours (the devkit's bit-interleaving rule); index 255 (void) is cream."""
    pal = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    if n > VOID:
        pal[VOID] = (224, 224, 192)
    return pal


def cb_palette(n: int = 256) -> np.ndarray:
    """A colour-blind-safe alternative: background black, classes from Paul Tol's schemes, void white."""
    pal = np.zeros((n, 3), dtype=np.uint8)
    for i, hexcol in enumerate(_TOL[: min(n - 1, len(_TOL))]):
        pal[i + 1] = [int(hexcol[k:k + 2], 16) for k in (1, 3, 5)]
    if n > VOID:
        pal[VOID] = (255, 255, 255)
    return pal


def colorize(label, palette: str = "voc") -> np.ndarray:
    """Label map (H, W) of class indices → RGB uint8 (H, W, 3). ``palette``: ``"voc"`` or ``"cb"``."""
    if palette not in ("voc", "cb"):
        raise ValueError(f"unknown palette {palette!r}: use 'voc' or 'cb' (colour-blind safe)")
    lab = label.cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
    pal = voc_palette() if palette == "voc" else cb_palette()
    return pal[lab.astype(np.int64) % 256]


def image_np(x: torch.Tensor) -> np.ndarray:
    """A normalized (3, H, W) float image or a uint8 one → (H, W, 3) for ``imshow``."""
    if x.dtype == torch.uint8:
        return x.permute(1, 2, 0).cpu().numpy()
    return denormalize(x.detach().float().cpu()).permute(1, 2, 0).numpy()


def show_samples(images, labels, titles=None, palette: str = "voc", preds=None, classes=None):
    """A grid: images on the first row, labels (and predictions, if given) below, and a legend of the
    classes shown (``classes``: their names, default the scenes'). Returns the figure."""
    import matplotlib.pyplot as plt
    rows = 2 + (preds is not None)
    n = len(images)
    fig, axes = plt.subplots(rows, n, figsize=(2.2 * n, 2.2 * rows), squeeze=False)
    for i in range(n):
        axes[0, i].imshow(image_np(images[i]))
        axes[1, i].imshow(colorize(labels[i], palette), interpolation="nearest")
        if preds is not None:
            axes[2, i].imshow(colorize(preds[i], palette), interpolation="nearest")
        if titles:
            axes[0, i].set_title(titles[i], fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("image")
    axes[1, 0].set_ylabel("label")
    if preds is not None:
        axes[2, 0].set_ylabel("prediction")
    fig.tight_layout()
    class_legend(fig, list(labels) + list(preds if preds is not None else []),
                 CLASSES if classes is None else classes, palette)
    return fig


def legend(classes, palette: str = "voc", ax=None):
    """Colour swatches with class names (void included)."""
    import matplotlib.patches as mpatches
    import matplotlib.pyplot as plt
    pal = voc_palette() if palette == "voc" else cb_palette()
    handles = [mpatches.Patch(color=pal[i] / 255, label=f"{i} {c}") for i, c in enumerate(classes)]
    handles.append(mpatches.Patch(color=pal[VOID] / 255, label="255 void", ec="k"))
    ax = ax or plt.gca()
    ax.legend(handles=handles, loc="center", ncol=3, fontsize=7, frameon=False)
    ax.axis("off")
    return ax


def class_legend(fig, maps, classes, palette: str = "voc", ncol: int = 5):
    """A legend under ``fig`` naming the classes that appear in ``maps`` (label or prediction maps,
    (H, W) or (N, H, W)): a learner reads a segmentation figure by its colours. Returns the legend."""
    import matplotlib.patches as mpatches
    pal = voc_palette() if palette == "voc" else cb_palette()
    present = sorted({int(v) for m in maps for v in torch.as_tensor(m).unique().tolist()})
    names = {**dict(enumerate(classes)), VOID: "void"}
    handles = [mpatches.Patch(fc=pal[i] / 255, ec="0.5", lw=0.5, label=names.get(i, str(i))) for i in present]
    return fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(ncol, len(handles)),
                      fontsize=8, frameon=False, title="classes shown", title_fontsize=8)


def show_source(obj) -> None:
    """Print the source of a library function or class: the lesson's code, not a copy of it."""
    from IPython.display import Markdown, display
    display(Markdown(f"```python\n{inspect.getsource(obj)}\n```"))


def widgets_available() -> bool:
    try:
        import ipywidgets  # noqa: F401
        return True
    except ImportError:
        return False


def explore(draw, static: list[dict] | None = None, bounds=None, **controls):
    """Draw ``draw(**kw)`` for every kwargs in ``static`` (the static twin, which a batch run keeps),
    then show an ipywidgets control over ``controls`` for interactive use in JupyterLab.

    The controls start in the state of the first static figure (else at ``draw``'s defaults), so the
    widget opens showing what the figure above it shows. ``bounds(**values)``, if given, returns
    ``{control: (min, max)}`` for the current values: a slider whose range depends on another control
    (a shift below the factor f, say) is kept to it. Returns the list of static figures (for
    ``run.savefig``).
    """
    import inspect

    import matplotlib.pyplot as plt
    from IPython.display import display
    figs = []
    for kw in static or []:
        fig = draw(**kw)
        figs.append(fig)
        display(fig)
        plt.close(fig)
    if controls and widgets_available():
        import ipywidgets as w

        def _show(**kw):
            fig = draw(**kw)
            display(fig)
            plt.close(fig)

        defaults = {k: v.default for k, v in inspect.signature(draw).parameters.items()
                    if v.default is not inspect.Parameter.empty}
        start = {**defaults, **(static[0] if static else {})}
        widgets = {k: w.interactive.widget_from_abbrev(a, start.get(k, inspect.Parameter.empty))
                   for k, a in controls.items()}
        for k, c in widgets.items():   # a widget passed in ready-made starts at the figure's value too
            if k in start and isinstance(controls[k], w.ValueWidget):
                c.value = start[k]
        if bounds is not None:
            def keep_in_bounds(_=None):
                for name, (lo, hi) in bounds(**{k: c.value for k, c in widgets.items()}).items():
                    c = widgets[name]
                    if lo > c.max:          # never min > max on the way
                        c.max, c.min = hi, lo
                    else:
                        c.min, c.max = lo, hi
            for c in widgets.values():
                c.observe(keep_in_bounds, "value")
            keep_in_bounds()
        display(w.interactive(_show, **widgets))
    return figs


# ---------------------------------------------------------------------- the FCNs (Fig. 3) and their training
def draw_architecture(nets: dict, title: str = ""):
    """Fig. 3 from the modules themselves: for each net (``{"FCN-32s": model, …}``) the backbone's
    poolings with their strides and channels, fc6–fc7, the score layers, the skips with their crop
    offsets and the upsamplings with their kernels — every label read from ``model.describe()``."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, Rectangle

    fig, axes = plt.subplots(len(nets), 1, figsize=(12.5, 2.7 * len(nets)), squeeze=False)
    for ax, (label, net) in zip(axes[:, 0], nets.items()):
        d, stages = net.describe(), net.backbone_stages()
        h = lambda s: 1.9 / s ** 0.42  # noqa: E731 — box height shrinks with the stride
        boxes = {"image": (0, 2.2)}
        for i, st in enumerate(stages, 1):
            boxes[st["name"]] = (1.25 * i, h(st["stride"]))
        xfc = 1.25 * (len(stages) + 1)
        boxes["fc"] = (xfc, h(32))
        has_fc = d["fc6_kernel"] is not None
        ax.add_patch(Rectangle((-0.35, -1.1), 0.7, 2.2, fc="#dddddd", ec="k"))
        ax.text(0, -1.25, f"image\n(pad {d['conv1_padding']})", ha="center", va="top", fontsize=7.5)
        for st in stages:
            x, hh = boxes[st["name"]]
            ax.add_patch(Rectangle((x - 0.3, -hh / 2), 0.6, hh, fc="#88aadd", ec="k"))
            ax.text(x, -1.25, f"{st['name']}\n1/{st['stride']}\n{st['channels']} ch", ha="center", va="top",
                    fontsize=7.5)
        k6 = d["fc6_kernel"]
        if has_fc:
            ax.add_patch(Rectangle((xfc - 0.3, -h(32) / 2), 0.6, h(32), fc="#aaccee", ec="k"))
            ax.text(xfc, -1.25, f"fc6 {k6}×{k6}\nfc7 1×1\n{d['channels']['fc7']} ch", ha="center", va="top",
                    fontsize=7.5)
        arrow = lambda a, b, **kw: ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=10,  # noqa: E731
                                                                lw=1.1, **kw))
        for a, b in zip(["image"] + [s["name"] for s in stages], [s["name"] for s in stages] + ["fc"] * has_fc):
            arrow((boxes[a][0] + 0.35, 0), (boxes[b][0] - 0.32, 0), color="0.4")
        ups, crops = d["upsampling"], d["crops"]
        K = d["num_classes"]
        x = xfc + 1.5
        if d["variant"] == "pool4":
            arrow((boxes["pool4"][0] + 0.3, 0), (x - 0.15, 0), color="C3", connectionstyle="arc3,rad=0.15")
            ax.add_patch(Rectangle((x - 0.15, -h(16) / 2), 0.3, h(16), fc="#ee9966", ec="k"))
            ax.text(x, h(16) / 2 + 0.1, f"score_pool4\n1×1 → {K}", ha="center", fontsize=7.5)
        else:
            arrow((xfc + 0.35, 0), (x - 0.15, 0), color="k")
            ax.add_patch(Rectangle((x - 0.15, -h(32) / 2), 0.3, h(32), fc="#ee9966", ec="k"))
            ax.text(x, h(32) / 2 + 0.1, f"score_fr\n1×1 → {K}", ha="center", fontsize=7.5)
        stride = 32 if d["variant"] != "pool4" else 16
        for skip, pool in (("pool4", "pool4"), ("pool3", "pool3")):
            if skip not in crops:
                continue
            up = ups["upscore2" if skip == "pool4" else "upscore_pool4"]
            x2 = x + 1.6
            stride //= 2
            arrow((x + 0.15, 0), (x2 - 0.15, 0), color="k")
            ax.text((x + x2) / 2, 0.12, f"×{up['stride']} (k{up['kernel']},\nlearned)", ha="center", fontsize=7)
            px = boxes[pool][0]
            arrow((px, -boxes[pool][1] / 2), (x2, -h(stride) / 2 - 0.02), color="C3",
                  connectionstyle="arc3,rad=0.12")
            pad = d["skip_padding"].get(f"score_{skip}", 0)
            ax.text(x2 + 0.2, -1.85 - (0.3 if skip == "pool3" else 0),
                    f"score_{skip} 1×1 → {K}{f', pad {pad}' if pad else ''}, crop {crops[skip]}",
                    ha="right", fontsize=7.5, color="C3")
            ax.add_patch(Rectangle((x2 - 0.15, -h(stride) / 2), 0.3, h(stride), fc="#ee9966", ec="k"))
            ax.text(x2, h(stride) / 2 + 0.1, f"+ (1/{stride})", ha="center", fontsize=7.5)
            x = x2
        final = ups["upscore"]
        xp = x + 2.0
        arrow((x + 0.15, 0), (xp - 0.4, 0), color="k")
        ax.text((x + xp) / 2 - 0.1, 0.12, f"×{final['stride']} (k{final['kernel']},\nfixed)\ncrop {crops['final']}",
                ha="center", fontsize=7)
        ax.add_patch(Rectangle((xp - 0.35, -1.1), 0.7, 2.2, fc="#f4d5b0", ec="k"))
        ax.text(xp, -1.25, "prediction\n1/1", ha="center", va="top", fontsize=7.5)
        ax.set_xlim(-0.8, xp + 0.8)
        ax.set_ylim(-2.5, 1.6)
        ax.set_title(label, loc="left", fontsize=10)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def map_on_image(scores: torch.Tensor, stride, centre, size) -> torch.Tensor:
    """A score map (K, h, w) shown on the image's pixel grid: pixel p takes the unit whose centre is
    nearest, u = round((p − centre) / stride) (its coordinate map, ``FCN.map_geometry()``), so a
    stride-32 map shows as 32-px blocks where the image's pixels are. Returns (K, H, W)."""
    H, W = (size, size) if isinstance(size, int) else size
    h, w = scores.shape[-2:]
    rows = ((torch.arange(H) - float(centre)) / float(stride)).round().long().clamp(0, h - 1)
    cols = ((torch.arange(W) - float(centre)) / float(stride)).round().long().clamp(0, w - 1)
    return scores[..., rows[:, None], cols[None, :]]


def plot_curves(results: dict, ax=None, smooth: int = 10):
    """Training loss of the stages, one after another on a common step axis (moving average)."""
    import matplotlib.pyplot as plt
    ax = ax or plt.subplots(figsize=(9, 3.2))[1]
    for name, r in results.items():
        loss = torch.tensor(r.history.loss)
        if len(loss) >= smooth > 1:
            loss = torch.nn.functional.avg_pool1d(loss[None, None], smooth, 1)[0, 0]
        start = r.extra.get("start_step", 0)
        ax.plot(start + torch.arange(len(loss)) + smooth // 2, loss, label=f"{name} (lr {r.extra.get('lr', '?'):g})")
    ax.set_xlabel("SGD step (stages continue their parent's count)")
    ax.set_ylabel("pixel loss")
    ax.legend(fontsize=7, ncol=2)
    return ax
