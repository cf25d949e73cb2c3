"""FCN-8s inference at 500×500 (full-width VGG16, batch 1): fcnlib against a straightforward eager
version, both against a large matrix product measured in the same run; and what conv1's padding of
100 costs against "same" padding.

    python benchmarks/bench_fcn.py [--device cpu|cuda] [--size 500] [--reps 3] [--no-compile]

- **reference**: the same layers written out plainly here — nn.Conv2d everywhere (fc6 a 7×7
  convolution), the transposed convolutions with their full (K, K, k, k) weights, upsampling the
  whole map and cropping it by slicing; NCHW, fp32, eager, no tuning.
- **fcnlib**: ``fcnlib.fast.optimize_for_inference`` — channels_last, torch.compile with
  Inductor's freezing (on a CPU), the final upsampling depthwise and only on the cells that reach
  the image; on a GPU bf16 autocast too (against a bf16 matrix product there).
- GFLOP/s counts the reference net's multiply-adds × 2 (convolutions and transposed convolutions,
  whole maps), the same numerator for both paths, so their rates compare like their times. They are
  held against torch.matmul (MKL sgemm on a CPU — on AMD CPUs well below what oneDNN reaches) and
  against the same product run as a 1×1 convolution (oneDNN / cuDNN), both measured in the run.
Weights are random (nothing is downloaded); both paths get the same weights and their outputs are
compared. Times are the best of ``--reps`` after warm-up; a shared CPU makes them noisy.
"""
import argparse
import copy
import time

import torch
from torch import nn

from fcnlib import fast, models, runtime, transplant
from fcnlib.upsample import bilinear_weight


class ReferenceFCN8s(nn.Module):
    """FCN-8s as a plain eager module: the same parameters as an fcnlib FCN-8s, no tricks."""

    def __init__(self, fcn: models.FCN):
        super().__init__()
        plain = lambda seq: nn.Sequential(*[_plain(m) for m in seq])  # noqa: E731
        self.to_pool3, self.to_pool4, self.to_pool5 = plain(fcn.to_pool3), plain(fcn.to_pool4), plain(fcn.to_pool5)
        self.fc = plain(fcn.fc)
        self.score_fr, self.score_pool4, self.score_pool3 = (copy.deepcopy(getattr(fcn, n))
                                                             for n in ("score_fr", "score_pool4", "score_pool3"))
        self.upscore2, self.upscore_pool4 = copy.deepcopy(fcn.upscore2), copy.deepcopy(fcn.upscore_pool4)
        K, f = fcn.num_classes, fcn.upscore.stride[0]
        self.upscore8 = nn.ConvTranspose2d(K, K, fcn.upscore.kernel_size[0], stride=f, bias=False)
        with torch.no_grad():
            self.upscore8.weight.copy_(bilinear_weight(K, fcn.upscore.kernel_size[0]))
        self.o4, self.o3, self.o = fcn.crop_pool4.offset[0], fcn.crop_pool3.offset[0], fcn.crop.offset[0]

    def forward(self, x):
        pool3 = self.to_pool3(x)
        pool4 = self.to_pool4(pool3)
        score = self.score_fr(self.fc(self.to_pool5(pool4)))
        up2 = self.upscore2(score)
        s4 = self.score_pool4(pool4)[:, :, self.o4:self.o4 + up2.shape[2], self.o4:self.o4 + up2.shape[3]]
        up4 = self.upscore_pool4(up2 + s4)
        s3 = self.score_pool3(pool3)[:, :, self.o3:self.o3 + up4.shape[2], self.o3:self.o3 + up4.shape[3]]
        up = self.upscore8(up4 + s3)
        return up[:, :, self.o:self.o + x.shape[2], self.o:self.o + x.shape[3]]


def _plain(m):
    """A layer as its plain torch.nn type (a Conv2d subclass such as fast.FCConv2d → nn.Conv2d, same weights)."""
    if isinstance(m, nn.Conv2d) and type(m) is not nn.Conv2d:
        c = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, bias=m.bias is not None)
        c.load_state_dict(m.state_dict())
        return c
    return copy.deepcopy(m)


def macs(model, x) -> int:
    """Multiply-adds of every Conv2d / ConvTranspose2d call in one forward pass (whole maps)."""
    total = [0]

    def hook(m, inp, out):
        if isinstance(m, nn.ConvTranspose2d):
            total[0] += inp[0].numel() * m.out_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        else:
            total[0] += out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    return total[0]


def best_time(fn, device, reps, warmup=1) -> float:
    return runtime.best_time(fn, device, reps, warmup)


def gemm_rates(device, dtype, n=4096, reps=5) -> dict:
    """GFLOP/s of a large matrix product (torch.matmul: MKL on a CPU, cuBLAS on a GPU) and of the same
    product as a 1×1 convolution (oneDNN / cuDNN), the kernels the convolutions run on."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = {"matmul": 2 * n ** 3 / best_time(lambda: a @ b, device, reps) / 1e9}
    c, side = 2048, 64
    conv = nn.Conv2d(c, c, 1, bias=False).to(device, dtype).to(memory_format=torch.channels_last).eval()
    x = torch.randn(1, c, side, side, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        out["conv1x1"] = 2 * c * c * side * side / best_time(lambda: conv(x), device, reps) / 1e9
    return out


def build(pad, fc6_padding, device):
    torch.manual_seed(0)
    net = transplant.fcn_from_classifier(transplant.vgg16_classifier(), "8s", pad=pad, fc6_padding=fc6_padding)
    for name, m in net.named_children():   # random score layers, so that outputs are not all zero
        if name.startswith("score"):
            nn.init.normal_(m.weight, std=1e-3)
    return net.eval()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--size", type=int, default=500)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--threads", default="all", help="CPU threads: all (every core), auto (measured) or N")
    args = p.parse_args()
    device = runtime.pick_device(args.device)
    if device.type == "cpu":
        import os
        n = os.cpu_count() if args.threads == "all" else args.threads
        runtime.set_threads("fastest" if n == "auto" else int(n))
    gpu = device.type == "cuda"
    dtype = torch.bfloat16 if gpu else torch.float32
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"input 1×3×{args.size}×{args.size}, {'bf16 autocast' if gpu else 'fp32'}")
    rates = gemm_rates(device, dtype)
    mm = rates["matmul"]
    print(f"{str(dtype)[6:]} matmul 4096³: {mm:7.1f} GFLOP/s;  the same product as a 1×1 convolution "
          f"(oneDNN/cuDNN): {rates['conv1x1']:7.1f} GFLOP/s")

    def line(name, t, flops):
        r = flops / t / 1e9
        return (f"  {name:24s}: {t * 1e3:8.1f} ms  {r:7.1f} GFLOP/s  ({r / mm:.0%} of matmul, "
                f"{r / rates['conv1x1']:.0%} of the 1×1-conv GEMM)")

    x = torch.randn(1, 3, args.size, args.size)
    results = {}
    for label, pad, fcp in (("pad 100 (paper)", 100, 0), ("'same' padding", 1, 3)):
        t0 = time.perf_counter()
        net = build(pad, fcp, "cpu")
        ref = ReferenceFCN8s(net).eval()
        flops = 2 * macs(ref, x)
        ref, xd = ref.to(device), x.to(device)
        with torch.no_grad():
            y_ref = ref(xd)
            t_ref = best_time(lambda: ref(xd), device, args.reps)   # fp32 NCHW eager, as written
            if gpu:
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    t_ref_bf16 = best_time(lambda: ref(xd), device, args.reps)
        t1 = time.perf_counter()
        opt = fast.optimize_for_inference(net, device, compile=not args.no_compile)
        y = opt(xd).float()   # compiles here
        compile_s = time.perf_counter() - t1
        t_fast = best_time(lambda: opt(xd), device, args.reps)
        err = ((y - y_ref).abs().max() / y_ref.abs().max()).item()
        results[label] = dict(flops=flops, ref=t_ref, fast=t_fast)
        print(f"\n{label}: FCN-8s {flops / 1e9:.1f} GFLOP (crops {net.crop_offsets()}), built in "
              f"{t1 - t0:.0f} s, first call (compile) {compile_s:.1f} s, max rel. difference {err:.1e}")
        print(line("reference eager NCHW fp32", t_ref, flops))
        if gpu:
            print(line("reference, bf16 autocast", t_ref_bf16, flops))
        print(line("fcnlib optimized", t_fast, flops) + f"   speedup {t_ref / t_fast:.2f}×"
              + (f" ({t_ref_bf16 / t_fast:.2f}× the bf16 reference)" if gpu else ""))
        del net, ref, opt

    a, b = results["pad 100 (paper)"], results["'same' padding"]
    print(f"\nconv1 padding 100 vs 'same': {a['flops'] / b['flops']:.2f}× the FLOPs, "
          f"{a['fast'] / b['fast']:.2f}× the time (fcnlib), {a['ref'] / b['ref']:.2f}× (reference)")


if __name__ == "__main__":
    main()
