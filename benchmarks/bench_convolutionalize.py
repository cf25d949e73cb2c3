"""Section 3.1's efficiency claim: AlexNet convolutionalized on a 500×500 image, one pass, against the
classifier on every output cell's 224×224 window (all in batches, and one at a time), forward and
backward, measured side by side in one run (fcnlib.convolutionalize.dense_vs_naive).

    python benchmarks/bench_convolutionalize.py [--device cpu|cuda] [--reps 3] [--rounds 3]
        [--threads auto|N ...] [--batch-sizes 0 27] [--formats channels_last contiguous]
        [--single N] [--no-backward] [--fc-gemm default|onednn]

The paths are interleaved within each round (a busy machine slows them alike); each configuration is
measured ``--rounds`` times and the median speedup is printed beside the spread. Every configuration
(threads × memory format × naive batch size) is tried, and the naive path's best configuration is
held against the dense path's best: neither side is handicapped by a setting that suits the other.
The paper's ratios (K40c GPU, Caffe; from fcnlib.paper) are against one window at a time.

Where the time goes on a CPU: the fully connected layers are the same work in both paths (one fc6/7/8
evaluation per cell) and more than half of the dense pass's FLOPs, and PyTorch runs them as MKL
matrix products, which on the course's AMD EPYC CPU reach about a third of the FLOP rate of oneDNN's
convolutions. ``--fc-gemm onednn`` is an experiment that shows this bound: in both
paths (forward only) it computes every fully connected layer with oneDNN's inner product on weights
laid out once in oneDNN's format (``torch._C._nn.mkldnn_linear``, an internal API).
"""
import argparse
import contextlib
import itertools
import statistics

import torch
import torchvision

from fcnlib import convolutionalize as cv
from fcnlib import runtime


@contextlib.contextmanager
def onednn_linear():
    """Route F.linear (nn.Linear and FCConv2d alike) through oneDNN's inner product in inference mode,
    each weight converted to oneDNN's layout once and cached. Both paths get it."""
    F, linear, cache = torch.nn.functional, torch.nn.functional.linear, {}

    def fast(x, w, b=None):
        if not torch.is_inference_mode_enabled() or x.device.type != "cpu" or x.dim() != 2 \
                or x.dtype != torch.float32:
            return linear(x, w, b)
        key = (w.data_ptr(), w._version)
        if key not in cache:
            bias = b if b is not None else w.new_zeros(w.shape[0])
            cache[key] = w.contiguous().to_mkldnn(), bias.contiguous().to_mkldnn()
        wm, bm = cache[key]
        return torch._C._nn.mkldnn_linear(x.contiguous().to_mkldnn(), wm, bm).to_dense()

    F.linear = fast
    try:
        yield
    finally:
        F.linear = linear


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--size", type=int, default=500)
    p.add_argument("--patch", type=int, default=224)
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per round (best kept)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per configuration (median reported)")
    p.add_argument("--threads", nargs="+", default=["auto"], help="CPU threads: auto (measured) and/or numbers")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[0], help="naive batch sizes (0: all windows)")
    p.add_argument("--formats", nargs="+", default=["channels_last", "contiguous"],
                   choices=["channels_last", "contiguous"])
    p.add_argument("--single", type=int, default=0, help="windows timed one by one (0: all)")
    p.add_argument("--no-backward", action="store_true")
    p.add_argument("--fc-gemm", choices=["default", "onednn"], default="default",
                   help="onednn: fully connected layers of both paths via oneDNN (CPU, forward only)")
    args = p.parse_args()
    if args.fc_gemm == "onednn":
        args.no_backward = True
    device = runtime.pick_device(args.device)
    torch.manual_seed(0)
    model = torchvision.models.alexnet().eval()
    ps = cv.paper_speedups()

    rows = []
    for threads, fmt, bs in itertools.product(args.threads, args.formats, args.batch_sizes):
        if device.type == "cpu":
            threads = runtime.set_threads(threads if threads == "auto" else int(threads))
        with onednn_linear() if args.fc_gemm == "onednn" else contextlib.nullcontext():
            rounds = [cv.dense_vs_naive(model, size=args.size, patch=args.patch, device=device, reps=args.reps,
                                        backward=not args.no_backward, single=args.single or None,
                                        batch_size=bs or None, channels_last=fmt == "channels_last")
                      for _ in range(args.rounds)]
        r = rounds[0]
        ms = {(d, path): statistics.median(x["ms"][d][path] for x in rounds)
              for d in r["ms"] for path in r["ms"][d]}
        rows.append({"threads": r["threads"], "format": fmt, "batch": r["batch_size"], "ms": ms,
                     "speedups": {k: [x["speedup"][k] for x in rounds] for k in r["speedup"]}})
        print(f"\n{device}, {r['threads']} threads, {fmt}, naive batch {r['batch_size']}: "
              f"{r['input']}² → {r['grid'][0]}×{r['grid'][1]} grid, FLOP ratio {r['flop_ratio']:.2f}×")
        for (d, path), v in ms.items():
            print(f"  {d:8s} {path:8s} {v:9.1f} ms")
        for k, v in rows[-1]["speedups"].items():
            print(f"  speedup {k:17s} median {statistics.median(v):6.2f}×  (rounds: "
                  + ", ".join(f"{x:.2f}" for x in v) + ")")

    # best configuration of each path, held against each other
    print(f"\nBest of each path over {len(rows)} configuration(s), median of {args.rounds} round(s):")
    for d in ("forward", "backward"):
        if (d, "dense") not in rows[0]["ms"]:
            continue
        dense = min(rows, key=lambda r: r["ms"][d, "dense"])
        for path in ("batched", "single"):
            naive = min(rows, key=lambda r: r["ms"][d, path])
            paper = f"   (paper, one at a time: {ps[d]:.2f}×)" if path == "single" else ""
            print(f"  {d:8s} dense {dense['ms'][d, 'dense']:8.1f} ms [{dense['threads']}t {dense['format']}]  vs "
                  f"{path:7s} {naive['ms'][d, path]:8.1f} ms [{naive['threads']}t {naive['format']} "
                  f"batch {naive['batch']}]  → {naive['ms'][d, path] / dense['ms'][d, 'dense']:5.2f}×{paper}")


if __name__ == "__main__":
    main()
