"""Confusion-matrix accumulation speed: fcnlib.metrics against the reference implementation's NumPy
bincount (score.py's fast_hist), measured side by side in one run.

    python benchmarks/bench_metrics.py [--device cpu|cuda] [--reps 20]

8 label maps of 500×500, 21 classes, about 5% void (255). Prints megapixels per second and the ratio.
"""
import argparse
import numpy as np
import torch

from fcnlib import metrics
from fcnlib.runtime import median_times, pick_device


def fast_hist(a, b, n):
    """The reference implementation's confusion matrix (NumPy, masks out void)."""
    k = (a >= 0) & (a < n)
    return np.bincount(n * a[k].astype(int) + b[k], minlength=n ** 2).reshape(n, n)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    n, N, H, W = 21, 8, 500, 500
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, n, (N, H, W), generator=g, dtype=torch.uint8)
    target[torch.rand(N, H, W, generator=g) < 0.05] = 255
    pred = torch.randint(0, n, (N, H, W), generator=g, dtype=torch.uint8)
    a, b = target.numpy().ravel(), pred.numpy().ravel()
    tt, pp = target.to(device), pred.to(device)
    times = median_times({"numpy": lambda: fast_hist(a, b, n), "fcnlib": lambda: metrics.confusion(pp, tt, n)},
                         device, reps=args.reps)
    t_np, t_ours = times["numpy"], times["fcnlib"]
    assert np.array_equal(metrics.confusion(pp, tt, n).cpu().numpy(), fast_hist(a, b, n))
    mpix = N * H * W / 1e6
    print(f"device {device}, threads {torch.get_num_threads()}, {N} labels of {H}x{W}, {n} classes, void 255")
    print(f"NumPy fast_hist (reference) {mpix / t_np:8.1f} Mpix/s")
    print(f"fcnlib.metrics.confusion    {mpix / t_ours:8.1f} Mpix/s")
    print(f"ratio fcnlib / NumPy        {t_np / t_ours:8.2f}x  (target >= 1.3x on the CPU)")


if __name__ == "__main__":
    main()
