"""Speed apart from the lessons: an inference-only wrapper around a plain lesson module.

The lesson modules (:mod:`fcnlib.models`, :mod:`fcnlib.convolutionalize`) stay plain PyTorch; this
module wraps them for speed and is never imported by them. ``optimize_for_inference(model)`` gives
the compiled channels_last version ``benchmarks/bench_fcn.py`` measures against the eager model.
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

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
