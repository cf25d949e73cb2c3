"""Speed apart from the lessons: wrappers around plain lesson modules.

The lesson modules (:mod:`fcnlib.models`, :mod:`fcnlib.convolutionalize`) stay plain PyTorch; this
module wraps them for speed and is never imported by them.

- ``optimize_for_inference(model)``: the compiled channels_last version ``benchmarks/bench_fcn.py``
  measures against the eager model.
- ``windowed_upsampling(model)``: a ``with`` block in which an FCN's final upsampling computes only
  the window its crop keeps (:func:`upsample_window`): the training loop runs in one.
- ``fc_as_gemm(model)``: a copy whose convolutionalized fully connected layers run as im2col + one
  GEMM (:class:`FCConv2d`), as the classifier's ``nn.Linear`` runs on a batch of windows: §3.1's
  dense-versus-naive timing then compares shared work, not two kernels.
- ``onednn_gemm(model)``: a copy whose fully connected layers run their CPU inference product on
  oneDNN's prepacked inner product (:class:`PackedGemm`), as §3.1's dense-versus-naive timing uses
  for both paths. The ops are private to PyTorch: they are used only from :data:`ONEDNN_SINCE` on and
  where present, else every layer runs plain ``F.linear`` (both paths tested).
"""
from __future__ import annotations

import contextlib
import copy
import re
import warnings

import torch
from torch import nn

from .models import FCN
from .runtime import autocast, pick_device
from .upsample import separable_kernel, upsample_separable


FREEZING_SINCE = (2, 1)  # the PyTorch release from which Inductor's (private) freezing config is used


class _Infer(nn.Module):
    """Inference on ``device``: the input made channels_last, no gradients, autocast where it pays."""

    def __init__(self, net, device):
        super().__init__()
        self.net, self.device = net, device

    def forward(self, x):
        x = x.to(self.device).contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), autocast(self.device):
            return self.net(x)


class _Fallback(nn.Module):
    """Runs the compiled module; on a compile failure at the first call, says why and runs eager."""

    def __init__(self, compiled, eager):
        super().__init__()
        self.compiled, self.eager, self.failed = compiled, eager, None

    def forward(self, x):
        if self.failed is None:
            try:
                # Inductor compiles at the first call: freezing must be on then (as torch.compile's
                # options={"freezing": True} it is not applied here), and stays on for every call
                import torch._inductor.config as inductor_config
                with torch.no_grad(), inductor_config.patch(freezing=True):
                    return self.compiled(x)
            except Exception as e:  # noqa: BLE001 — any compiler/toolchain failure falls back
                self.failed = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                warnings.warn(f"torch.compile failed ({self.failed}); running the eager model instead",
                              stacklevel=2)
        return self.eager(x)


def plain_convolutions(model: nn.Module) -> nn.Module:
    """``model`` (in place) with every subclass of ``nn.Conv2d`` that has its own forward — such as
    convolutionalize's ``FCConv2d`` (fc6 as im2col + matrix product) — replaced by a plain
    ``nn.Conv2d`` with the same weights, which oneDNN/cuDNN run and Inductor's freezing prepacks."""
    for name, child in model.named_children():
        if isinstance(child, nn.Conv2d) and type(child) is not nn.Conv2d:
            conv = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride,
                             child.padding, child.dilation, child.groups, child.bias is not None,
                             device=child.weight.device, dtype=child.weight.dtype)
            conv.load_state_dict(child.state_dict())
            conv.requires_grad_(child.weight.requires_grad)
            setattr(model, name, conv)
        else:
            plain_convolutions(child)
    return model


def optimize_for_inference(model: nn.Module, device="cpu", compile: bool = True) -> nn.Module:
    """An inference-only version of ``model`` on ``device`` (eval mode, no gradients).

    - CPU: channels_last weights and inputs, then ``torch.compile`` with Inductor's ``freezing``
      (weights folded as constants, convolutions prepacked for oneDNN); if compiling is unavailable
      or fails (no C++ compiler, unsupported platform) a warning says why and the eager channels_last
      model runs. CPU bf16 is not used: it is several times slower than fp32 on most CPUs.
    - CUDA: channels_last and bf16 autocast (``fcnlib.runtime.autocast``), compiled the same way.
    Call the result like the model: ``opt(x)`` (x is made channels_last). Compiling takes seconds
    at the first call.
    """
    device = pick_device(device) if isinstance(device, str) else torch.device(device)
    eager = plain_convolutions(copy.deepcopy(model)).eval().to(device).to(memory_format=torch.channels_last)
    for p in eager.parameters():
        p.requires_grad_(False)
    if not compile:
        return _Infer(eager, device)
    if _version(torch.__version__) < FREEZING_SINCE:
        warnings.warn(f"torch {torch.__version__} is older than {'.'.join(map(str, FREEZING_SINCE))}, whose "
                      "Inductor freezing this uses: running the eager channels_last model", stacklevel=2)
        return _Infer(eager, device)
    try:
        compiled = torch.compile(eager)
    except Exception as e:  # noqa: BLE001
        warnings.warn(f"torch.compile is unavailable ({type(e).__name__}: {e}); using eager channels_last",
                      stacklevel=2)
        return _Infer(eager, device)
    return _Infer(_Fallback(compiled, eager), device)


# ---------------------------------------------------------------- the final upsampling, windowed
def upsample_window(score: torch.Tensor, up: nn.ConvTranspose2d, offset, size) -> torch.Tensor:
    """``Crop(offset)(up(score), like)`` for a (N, K, h, w) ``score`` and ``like`` of ``size`` (H, W),
    computed on the input cells that reach the kept window only — the same sums, so the same numbers.

    With conv1 padded by 100 the upsampled map is mostly padding (a 64-px image: 312² outputs, of
    which 64² are kept); the kept rows [o, o + H) get contributions from cells k with
    k·f ≤ p < k·f + kernel only. Upsampling those cells alone is 30× faster on a CPU. A fixed
    bilinear ``up`` (the final upsampling) is computed as two matrix products per channel
    (``upsample.upsample_separable``): the same sums in another order, equal to float rounding, and
    ``benchmarks/bench_train.py`` measures what it saves a training step.
    """
    w = separable_kernel(up)
    if w is not None:
        return upsample_separable(score, up, offset, size, kernel=w)
    f, kern = up.stride[0], up.kernel_size[0]
    (oh, ow), (H, W) = offset, size
    rows = (max(0, -(-(oh - kern + 1) // f)), min(score.shape[-2] - 1, (oh + H - 1) // f))
    cols = (max(0, -(-(ow - kern + 1) // f)), min(score.shape[-1] - 1, (ow + W - 1) // f))
    y = up(score[..., rows[0]:rows[1] + 1, cols[0]:cols[1] + 1])   # (N, K, (m + 1)·f, …)
    top, left = oh - rows[0] * f, ow - cols[0] * f
    if top + H > y.shape[-2] or left + W > y.shape[-1]:
        raise ValueError(f"the ×{f} upsampled scores do not cover the {H}×{W} input at offset {offset}")
    return y[..., top:top + H, left:left + W]


class WindowedFCN(FCN):
    """An :class:`fcnlib.models.FCN` whose final upsampling is :func:`upsample_window` (same numbers
    to float rounding). Made only by :func:`windowed_upsampling`, for the duration of its block."""

    def upsample(self, score, x):
        return upsample_window(score, self.upscore, self.crop.offset, x.shape[-2:])  # (N, K, H, W)


@contextlib.contextmanager
def windowed_upsampling(model: nn.Module):
    """Within the block, every :class:`fcnlib.models.FCN` in ``model`` (``model`` itself included)
    computes its final ×f upsampling only on the window its crop keeps. Each FCN's class is swapped
    for :class:`WindowedFCN` — a subclass that adds no state, so parameters, buffers, the state_dict
    and hooks stay as they are (the way ``torch.nn.utils.parametrize`` gives a module a subclass) —
    and put back on the way out. On a CPU it makes a training step of the course's FCN-8s about 20%
    cheaper (``benchmarks/bench_train.py``); evaluation gains little."""
    fcns = [m for m in model.modules() if type(m) is FCN]
    for m in fcns:
        m.__class__ = WindowedFCN
    try:
        yield model
    finally:
        for m in fcns:
            m.__class__ = FCN


# ---------------------------------------------------------------- fc layers as one GEMM
class FCConv2d(nn.Conv2d):
    """A convolutionalized fully connected layer (:func:`fcnlib.convolutionalize.linear_to_conv`) that
    on a CPU computes itself as im2col + one matrix product, the way Caffe runs every convolution: an
    ``nn.Conv2d`` (same weights, same results to float rounding). :func:`fc_as_gemm` puts it in.

    Why: its kernel is huge (fc6: 4096×256×6×6, 151 MB) and its output small, a shape CPU convolution
    kernels handle badly (oneDNN re-lays out the whole kernel on every call: several times slower than
    the product). As a product it runs the very GEMM the classifier's ``nn.Linear`` runs on a batch of
    windows, so dense-vs-naive timings compare shared work, not two kernels. On a GPU, cuDNN's own
    convolution is used (it needs no im2col copy). ``gemm`` (None, or a :class:`PackedGemm` set by
    :func:`onednn_gemm`) computes that product with oneDNN in inference. It takes what
    ``nn.Conv2d`` takes (an unbatched (C, H, W) image, an empty batch) and refuses what it refuses
    (too few pixels for the kernel, another channel count) with a ValueError that says what to do.
    """
    gemm = None

    def forward(self, x):
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            if x.dim() == 3 and x.shape[0] == self.in_channels:  # unbatched (C, H, W), as nn.Conv2d takes it
                return self.forward(x.unsqueeze(0)).squeeze(0)     # (out, h, w)
            self._refuse(x)
        if (x.device.type != "cpu" or self.groups != 1 or self.padding_mode != "zeros"
                or isinstance(self.padding, str)):
            return super().forward(x)
        (k, _), (d, _), (p, _), (s, _) = self.kernel_size, self.dilation, self.padding, self.stride
        N, C, H, W = x.shape
        h, w = (H + 2 * p - d * (k - 1) - 1) // s + 1, (W + 2 * p - d * (k - 1) - 1) // s + 1
        if h < 1 or w < 1:
            self._refuse(x)
        if N == 0:
            return super().forward(x)                               # (0, out, h, w), as nn.Conv2d gives
        packed = self.gemm is not None and self.gemm.applies(x)
        # column order: (C, k, k) as flatten has it, or (k, k, C), which a channels-last tensor holds
        # contiguously; the product reads the kernel in the same order (a view when the kernel is
        # channels-last; oneDNN's packed copy is made once in whichever order is used)
        cl = (x if packed else self.weight).is_contiguous(memory_format=torch.channels_last)
        kkc = k > 1 and cl
        if k == 1 and p == 0 and s == 1:
            rows = x.permute(0, 2, 3, 1).reshape(N * H * W, C)                # (N·L, C)
        elif kkc and d == 1:
            xp = (nn.functional.pad(x, (p,) * 4) if p else x).permute(0, 2, 3, 1)  # (N, H+2p, W+2p, C)
            windows = xp.unfold(1, k, s).unfold(2, k, s)                       # (N, h, w, C, k, k), a view
            rows = windows.permute(0, 1, 2, 4, 5, 3).reshape(N * h * w, -1)    # (N·L, k·k·C)
        else:
            cols = nn.functional.unfold(x, k, dilation=d, padding=p, stride=s)  # (N, C·k·k, L)
            if kkc:
                cols = cols.view(N, C, k * k, -1).transpose(1, 2)              # (N, k·k, C, L)
            rows = cols.reshape(N, -1, h * w).transpose(1, 2).reshape(N * h * w, -1)  # (N·L, C·k·k)
        weight = self.weight.permute(0, 2, 3, 1) if kkc else self.weight       # (out, k, k, C) | (out, C, k, k)
        if packed:
            y = self.gemm(rows, weight, self.bias)                              # (N·L, out), oneDNN
        else:
            y = nn.functional.linear(rows.contiguous(), weight.reshape(len(weight), -1), self.bias)
        return y.view(N, h, w, -1).permute(0, 3, 1, 2)     # (N, out, h, w), channels-last strides

    def _refuse(self, x):
        """The ValueError for an input nn.Conv2d would refuse, saying what was wrong and what to do."""
        shape = tuple(x.shape)
        if x.dim() not in (3, 4):
            raise ValueError(f"{type(self).__name__} takes (N, C, H, W) or unbatched (C, H, W) input, got "
                             f"shape {shape}: add or remove the batch dimension")
        if x.shape[-3] != self.in_channels:
            raise ValueError(f"input {shape} has {x.shape[-3]} channels but this layer reads {self.in_channels} "
                             "(its weight is (out, C, k, k)): feed it the feature map it was made for "
                             "(fc6 reads the last convolution's output)")
        (kh, kw), (dh, dw), (ph, pw) = self.kernel_size, self.dilation, self.padding
        kh, kw = dh * (kh - 1) + 1, dw * (kw - 1) + 1                  # the dilated kernel's extent
        H, W = x.shape[-2:]
        raise ValueError(f"input {H}×{W} is smaller than this layer's {kh}×{kw} kernel (padding {ph}, {pw}): "
                         f"it needs at least {max(kh - 2 * ph, 1)}×{max(kw - 2 * pw, 1)} px; pad or resize "
                         "the input (or the image it comes from)")


def fc_as_gemm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose convolutionalized fully connected layers (the ``nn.Conv2d`` children
    named fc6, fc7, fc8, … that :func:`fcnlib.convolutionalize.convolutionalize` makes) are
    :class:`FCConv2d`: same parameters and state_dict keys, computed as im2col + GEMM on a CPU."""
    model = copy.deepcopy(model)
    for name, m in model.named_modules():
        if type(m) is nn.Conv2d and re.fullmatch(r"fc\d+", name.rsplit(".", 1)[-1]):
            m.__class__ = FCConv2d          # a subclass that adds no state: the layer itself, rerouted
    return model


# ---------------------------------------------------------------- oneDNN's GEMM for fc layers
ONEDNN_SINCE = (2, 1)  # the PyTorch release from which the prepacked oneDNN linear ops below are used


def _version(v: str) -> tuple[int, int]:
    major, minor = v.split("+")[0].split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def _onednn_linear_ops():
    """(pack, linear): PyTorch's prepacked oneDNN linear, the private ops torch.compile uses on a CPU;
    None (the plain ``F.linear`` path) on a PyTorch older than :data:`ONEDNN_SINCE`, built without
    oneDNN, or without the ops."""
    if _version(torch.__version__) < ONEDNN_SINCE or not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._reorder_linear_weight, torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


_ONEDNN_LINEAR = _onednn_linear_ops()


class PackedGemm:
    """``y = x · Wᵀ + b`` for CPU float32 inference by oneDNN's inner product, with W kept in oneDNN's
    own blocked layout (made once, remade if the weight changes).

    Why: PyTorch computes a float32 ``F.linear`` on a CPU with MKL's GEMM, which on AMD processors
    runs its AVX2 code; oneDNN (PyTorch's convolution library) uses AVX-512 where the CPU has it. On
    the course's 2-core AMD EPYC the fully connected layers of AlexNet run about 2.4× faster this way.
    Same arithmetic, different summation order: results agree to float32 rounding (tested).

    ``applies(x)`` says whether this path is taken: only with autograd off (``torch.no_grad`` or
    ``inference_mode``: the packed copy carries no gradient), on a CPU float32 input, where this
    PyTorch has the ops (:func:`_onednn_linear_ops`). Otherwise callers use plain ``F.linear``. ``weight`` may be any view of shape
    (out, …): it is read as (out, in) in its logical order, whatever its strides (a permuted view
    packs a permuted copy; the copy is remade when the view or the weight's values change).
    """

    def __init__(self):
        self._key, self._packed = None, None

    @staticmethod
    def applies(x: torch.Tensor) -> bool:
        return (_ONEDNN_LINEAR is not None and not torch.is_grad_enabled() and x.device.type == "cpu"
                and x.dtype == torch.float32)

    def __call__(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        key = (weight.data_ptr(), weight._version, weight.shape, weight.stride(),
               None if bias is None else (bias.data_ptr(), bias._version))
        if key != self._key:
            w = weight.detach().reshape(weight.shape[0], -1).contiguous()   # (out, in), logical order
            b = bias.detach().contiguous() if bias is not None else None
            self._packed = (_ONEDNN_LINEAR[0](w), b)
            self._key = key
        w, b = self._packed
        return _ONEDNN_LINEAR[1](x.contiguous(), w, b, "none", [], "")     # (N, out)

    def __deepcopy__(self, memo):          # a copy packs its own weight when first used
        return PackedGemm()

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.__init__()


class OneDNNLinear(nn.Linear):
    """``nn.Linear`` whose inference runs on oneDNN's inner product (``PackedGemm``); same
    parameters and state_dict keys, and plain ``F.linear`` wherever the packed path does not apply
    (training, autograd, another device or dtype)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gemm = PackedGemm()

    @classmethod
    def of(cls, linear: nn.Linear) -> "OneDNNLinear":
        m = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        m.weight, m.bias = linear.weight, linear.bias                    # shared, not copied
        return m.train(linear.training)

    def forward(self, x):
        if self.gemm.applies(x):
            return self.gemm(x, self.weight, self.bias)                  # (N, out)
        return super().forward(x)


def onednn_gemm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose fully connected layers (``nn.Linear`` and the convolutionalized
    ``FCConv2d``) compute their matrix product with oneDNN in CPU inference (see PackedGemm)."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is nn.Linear:
                setattr(parent, name, OneDNNLinear.of(child))
            elif isinstance(child, FCConv2d):
                child.gemm = PackedGemm()
    return model
