"""Speed apart from the lessons: wrappers around plain lesson modules.

The lesson modules (:mod:`fcnlib.models`, :mod:`fcnlib.convolutionalize`) stay plain PyTorch; this
module wraps them for speed and is never imported by them.

- ``optimize_for_inference(model)``: the compiled channels_last version ``benchmarks/bench_fcn.py``
  measures against the eager model.
- ``onednn_gemm(model)``: a copy whose fully connected layers run their CPU inference product on
  oneDNN's prepacked inner product (:class:`PackedGemm`), as §3.1's dense-versus-naive timing uses
  for both paths. The ops are private to PyTorch: they are used only from :data:`ONEDNN_SINCE` on and
  where present, else every layer runs plain ``F.linear`` (both paths tested).
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from .convolutionalize import FCConv2d
from .runtime import autocast, pick_device


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

    class _Infer(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            x = x.to(device).contiguous(memory_format=torch.channels_last)
            with torch.no_grad(), autocast(device):
                return self.net(x)

    infer = _Infer(eager)
    if not compile:
        return infer
    try:
        compiled = torch.compile(eager)
    except Exception as e:  # noqa: BLE001
        warnings.warn(f"torch.compile is unavailable ({type(e).__name__}: {e}); using eager channels_last",
                      stacklevel=2)
        return infer
    return _Infer(_Fallback(compiled, eager))


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
