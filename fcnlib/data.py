"""The embedded dataset: procedurally generated scenes that stand in for PASCAL VOC.

Twenty object classes are the product of five shapes (disk, square, triangle, cross, ring) and four
surface textures (solid, stripes, checker, dots); every object takes its colour from one shared
distribution, so no class can be told from a pixel's colour alone. The texture is visible in a few
pixels, the shape only over the whole object (the "what" of Section 4.2 needs context), and crosses
and rings have thin parts and sharp corners (the "where" needs fine layers). Labels follow VOC's
conventions: uint8, 0 = background, 255 = void along object boundaries like VOC's outlines.

``ObjectCrops`` renders one centred object per crop, among partly visible distractors, from the same
generator: the course's stand-in for ImageNet, on which its small classifiers are pretrained. As
ImageNet has more categories than VOC, the crops have 48 object classes (eight shapes × six textures,
``PRETRAIN_CLASSES``), of which the scenes' twenty are the first; index 0 is background.

Every sample is a pure function of (seed, split, index, size): the same bytes on every run.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

SHAPES = ("disk", "square", "triangle", "cross", "ring")
TEXTURES = ("solid", "stripes", "checker", "dots")
CLASSES = ("background",) + tuple(f"{s}-{t}" for s in SHAPES for t in TEXTURES)
NUM_CLASSES = len(CLASSES)  # 21, as in PASCAL VOC
# the pretraining classes: the scene classes first (same indices), then 28 more, as ImageNet ⊃ VOC
PRETRAIN_SHAPES = SHAPES + ("ellipse", "star", "crescent")
PRETRAIN_TEXTURES = TEXTURES + ("grid", "rings")
PRETRAIN_CLASSES = CLASSES + tuple(f"{s}-{t}" for s in PRETRAIN_SHAPES for t in PRETRAIN_TEXTURES
                                   if f"{s}-{t}" not in CLASSES)
VOID = 255  # void pixels (VOC's outlines), ignored by the loss and the metrics: the one definition
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
_SPLIT_OFFSET = {"train": 0, "val": 1_000_003, "test": 2_000_029}


def _check_split(split: str) -> int:
    if split not in _SPLIT_OFFSET:
        raise ValueError(f"unknown split {split!r}: use one of {', '.join(_SPLIT_OFFSET)}")
    return _SPLIT_OFFSET[split]


def _shape_mask(name: str, u: torch.Tensor, v: torch.Tensor, r: float) -> torch.Tensor:
    """Boolean mask of one shape of circumradius ``r`` in object coordinates (u, v)."""
    if name == "disk":
        return u * u + v * v <= r * r
    if name == "square":
        return torch.maximum(u.abs(), v.abs()) <= 0.75 * r
    if name == "ellipse":
        return (u / r) ** 2 + (v / (0.55 * r)) ** 2 <= 1
    if name == "star":  # five rounded points
        return u * u + v * v <= (r * (0.62 + 0.38 * torch.cos(5 * torch.atan2(v, u)))) ** 2
    if name == "crescent":
        return (u * u + v * v <= r * r) & ((u - 0.45 * r) ** 2 + v * v > (0.8 * r) ** 2)
    if name == "triangle":
        mask = torch.ones_like(u, dtype=torch.bool)
        for ang in (-90.0, 30.0, 150.0):  # outward normals of the three edges, inradius r/2
            a = math.radians(ang)
            mask &= math.cos(a) * u + math.sin(a) * v <= 0.5 * r
        return mask
    if name == "cross":
        w = 0.3 * r
        return ((u.abs() <= w) & (v.abs() <= r)) | ((v.abs() <= w) & (u.abs() <= r))
    rr = u * u + v * v  # ring
    return (rr <= r * r) & (rr >= (0.55 * r) ** 2)


def _texture_mask(name: str, u: torch.Tensor, v: torch.Tensor, period: float) -> torch.Tensor:
    """Where the second colour of a texture goes (object coordinates, so it turns with the object)."""
    if name == "solid":
        return torch.zeros_like(u, dtype=torch.bool)
    if name == "stripes":
        return torch.floor(v / period).remainder(2) == 1
    if name == "checker":
        return (torch.floor(u / period) + torch.floor(v / period)).remainder(2) == 1
    if name == "grid":
        return (u.remainder(period) < period / 3) | (v.remainder(period) < period / 3)
    if name == "rings":
        return torch.floor((u * u + v * v).sqrt() / period).remainder(2) == 1
    du = u.remainder(period) - period / 2  # dots
    dv = v.remainder(period) - period / 2
    return du * du + dv * dv <= (period / 3) ** 2


def void_band(label: torch.Tensor, width: int = 1) -> torch.Tensor:
    """Mark pixels within ``width`` of a label change as void (255), like VOC's object outlines."""
    if width <= 0:
        return label
    lab = label.float()[None, None]  # (1, 1, H, W)
    k = 2 * width + 1
    hi = F.max_pool2d(lab, k, stride=1, padding=width)
    lo = -F.max_pool2d(-lab, k, stride=1, padding=width)
    out = label.clone()
    out[(hi != lo)[0, 0]] = VOID
    return out


def _background(g: torch.Generator, H: int, W: int, yy, xx) -> torch.Tensor:
    """A smooth colour gradient plus a low-frequency blotch field: float (3, H, W)."""
    rand = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    c0, c1 = rand(3) * 0.8 + 0.1, rand(3) * 0.8 + 0.1
    a = rand(1).item() * 2 * math.pi
    t = ((math.cos(a) * xx / W + math.sin(a) * yy / H) + 1) / 2
    img = c0[:, None, None] * (1 - t) + c1[:, None, None] * t  # (3, H, W)
    blot = F.interpolate(rand(1, 3, 5, 5), size=(H, W), mode="bicubic", align_corners=False)[0]
    return img + 0.25 * (blot - 0.5)


def _paint(img, label, g, name: str, value: int, cx: float, cy: float, r: float, yy, xx):
    """Paint one object (``name`` = "shape-texture", random turn and colour) into ``img``; its pixels
    get ``value`` in ``label``. Returns the new image."""
    rand = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    shape, texture = name.split("-")
    ang = rand(1).item() * 2 * math.pi
    dx, dy = xx - cx, yy - cy
    u = math.cos(ang) * dx + math.sin(ang) * dy
    v = -math.sin(ang) * dx + math.cos(ang) * dy
    mask = _shape_mask(shape, u, v, r)
    period = max(2.0, min(4.0, r / 3))
    second = _texture_mask(texture, u, v, period)
    col = rand(3) * 0.8 + 0.1
    col2 = torch.where(col > 0.5, col - 0.45, col + 0.45)  # a contrasting shade of the same hue
    paint = torch.where(second[None], col2[:, None, None], col[:, None, None])
    label[mask] = value
    return torch.where(mask[None], paint, img)


def _finish(img, g) -> torch.Tensor:
    img = img + 0.04 * torch.randn(img.shape, generator=g)  # sensor noise
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


def render(seed: int, size: int | tuple[int, int] = 64, objects: tuple[int, int] = (1, 4),
           radius: tuple[float, float] = (0.08, 0.3), void_width: int = 1):
    """Render one scene. Returns ``image`` uint8 (3, H, W) and ``label`` uint8 (H, W).

    ``objects`` = (fewest, most) objects, each of a random scene class, with a radius of
    ``radius`` × the image side, anywhere in the image (later objects occlude earlier ones).
    """
    H, W = (size, size) if isinstance(size, int) else size
    g = torch.Generator().manual_seed(int(seed))
    rand = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    yy, xx = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    img = _background(g, H, W, yy, xx)
    label = torch.zeros(H, W, dtype=torch.uint8)
    S = min(H, W)
    n = int(torch.randint(objects[0], objects[1] + 1, (1,), generator=g))
    for cls in torch.randint(1, NUM_CLASSES, (n,), generator=g).tolist():
        r = S * (radius[0] + (radius[1] - radius[0]) * rand(1).item())
        cx = r * 0.5 + rand(1).item() * (W - r)
        cy = r * 0.5 + rand(1).item() * (H - r)
        img = _paint(img, label, g, CLASSES[cls], cls, cx, cy, r, yy, xx)
    return _finish(img, g), void_band(label, void_width)


def render_crop(seed: int, cls: int, size: int = 64, radius: tuple[float, float] = (0.2, 0.55),
                clutter: float = 0.6, jitter: float = 0.05):
    """Render one classification crop of ``PRETRAIN_CLASSES[cls]``: uint8 (3, size, size).

    The object sits near the centre (± ``jitter`` × the side) with a radius of ``radius`` × the side, on top
    of up to two distractors of any class (with probability ``clutter``) that lie near the border
    and are cut by it, as ImageNet's photos show their object among others. Class 0 (background)
    has the distractors and no object within 15% of the side from the centre.
    """
    g = torch.Generator().manual_seed(int(seed))
    rand = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    img = _background(g, size, size, yy, xx)
    scratch = torch.zeros(size, size, dtype=torch.uint8)
    n_distract = int(torch.randint(1, 3, (1,), generator=g)) if rand(1).item() < clutter else 0
    for _ in range(n_distract):
        other = int(torch.randint(1, len(PRETRAIN_CLASSES), (1,), generator=g))
        r = size * (0.15 + 0.2 * rand(1).item())
        a = rand(1).item() * 2 * math.pi
        d = r + 0.15 * size + rand(1).item() * 0.25 * size  # its nearest point ≥ 15% of the side away
        img = _paint(img, scratch, g, PRETRAIN_CLASSES[other], other, size / 2 + d * math.cos(a),
                     size / 2 + d * math.sin(a), r, yy, xx)
    if cls:
        r = size * (radius[0] + (radius[1] - radius[0]) * rand(1).item())
        cx = size * (0.5 + jitter * (2 * rand(1).item() - 1))
        cy = size * (0.5 + jitter * (2 * rand(1).item() - 1))
        img = _paint(img, scratch, g, PRETRAIN_CLASSES[cls], cls, cx, cy, r, yy, xx)
    return _finish(img, g)


def normalize(image: torch.Tensor) -> torch.Tensor:
    """uint8 (…, 3, H, W) → float32, centred and scaled with the course's MEAN and STD."""
    if image.dim() < 3 or image.shape[-3] != 3:
        raise ValueError(f"expected an RGB image shaped (..., 3, H, W), got {tuple(image.shape)}: "
                         "convert grey or RGBA images to RGB first")
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return (image.float() / 255 - mean) / std


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize`, to float in [0, 1] (for display)."""
    mean = torch.tensor(MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(3, 1, 1)
    return (x * std + mean).clamp(0, 1)


class EmbeddedScenes(Dataset):
    """Scenes with dense labels: ``(image float (3, H, W), label int64 (H, W))``, like a VOC loader.

    ``n`` samples of the ``split`` at ``size`` pixels; generated on first access and kept in memory.
    """

    num_classes = NUM_CLASSES
    classes = CLASSES
    ignore_index = VOID

    def __init__(self, split: str = "train", n: int = 200, size: int = 64, seed: int = 0,
                 objects=(1, 4), radius=(0.08, 0.3), void_width: int = 1):
        self.offset = _check_split(split)
        if n < 1 or size < 8:
            raise ValueError(f"need n >= 1 and size >= 8, got n={n}, size={size}")
        self.split, self.n, self.size, self.seed = split, n, size, seed
        self.kw = dict(objects=objects, radius=radius, void_width=void_width)
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self):
        return self.n

    def sample_seed(self, i: int) -> int:
        return self.seed * 10_000_019 + self.offset + i

    def raw(self, i: int):
        """The uint8 image (3, H, W) and uint8 label (H, W) of sample ``i``."""
        if not 0 <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} samples")
        if i not in self._cache:
            self._cache[i] = render(self.sample_seed(i), self.size, **self.kw)
        return self._cache[i]

    def __getitem__(self, i):
        image, label = self.raw(i)
        return normalize(image), label.long()

    def tensors(self):
        """All samples stacked: images (N, 3, H, W) float and labels (N, H, W) int64."""
        items = [self[i] for i in range(self.n)]
        return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


class ObjectCrops(Dataset):
    """Classification crops: ``(image float (3, S, S), class index into PRETRAIN_CLASSES)``.

    The course's stand-in for ImageNet (:func:`render_crop`): one crop in eight is background (class
    0), the others cycle through the 48 object classes.
    """

    classes = PRETRAIN_CLASSES
    num_classes = len(PRETRAIN_CLASSES)

    def __init__(self, split: str = "train", n: int = 2100, size: int = 64, seed: int = 0,
                 radius=(0.2, 0.55), clutter: float = 0.6, jitter: float = 0.05, background_every: int = 8):
        self.offset = _check_split(split)
        self.split, self.n, self.size, self.seed = split, n, size, seed
        self.radius, self.clutter, self.jitter, self.every = radius, clutter, jitter, background_every

    def __len__(self):
        return self.n

    def label(self, i: int) -> int:
        """Class of crop ``i``: background for one in ``background_every``, else the object classes in turn."""
        k = self.every
        return 0 if i % k == 0 else 1 + (i - i // k - 1) % (self.num_classes - 1)

    def raw(self, i: int) -> torch.Tensor:
        """The uint8 crop ``i`` (3, S, S)."""
        if not 0 <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} samples")
        return render_crop(self.seed * 10_000_019 + self.offset + 500_000_000 + i, self.label(i), self.size,
                           self.radius, self.clutter, self.jitter)

    def __getitem__(self, i):
        return normalize(self.raw(i)), self.label(i)

    def uint8_tensors(self):
        """All crops stacked, uint8 (N, 3, S, S) (a quarter of the float memory), and labels (N,)."""
        return (torch.stack([self.raw(i) for i in range(self.n)]),
                torch.tensor([self.label(i) for i in range(self.n)]))

    def tensors(self):
        X, Y = self.uint8_tensors()
        return normalize(X), Y
