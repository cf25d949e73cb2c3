"""Section 3.1's efficiency claim: AlexNet convolutionalized on a 500×500 image, one pass, against the
classifier on every output cell's window (all in batches, and one at a time), forward and backward,
measured side by side in one run (fcnlib.efficiency.dense_vs_naive).

    python benchmarks/bench_convolutionalize.py [--device cpu|cuda] [--reps 3] [--rounds 3]
        [--geometry caffe torchvision] [--gemm auto default onednn] [--threads auto|N ...]
        [--batch-sizes 0 27] [--formats channels_last contiguous] [--single N] [--no-backward]

Two geometries (fcnlib.efficiency.caffe_geometry): ``caffe``, AlexNet as the paper ran it (conv1
unpadded, pooling rounding up: a 10×10 grid from 227-px windows, the paper's configuration, FLOP
ratio 7.70), and ``torchvision``'s own (9×9 grid from 224-px windows, FLOP ratio 7.08).

The paths are interleaved within each round (a busy machine slows them alike); each configuration is
measured ``--rounds`` times and the median is printed beside the spread of the speedups. Every
configuration (threads × memory format × naive batch size × GEMM) is tried, and the naive path's best
configuration is held against the dense path's best: neither side is handicapped by a setting that
suits the other, and a GEMM choice always applies to both paths.

Where the time goes on a CPU: the fully connected layers are the same work in both paths (one
fc6/7/8 evaluation per cell) and more than half of the dense pass's FLOPs. PyTorch computes them with
MKL's GEMM, which on AMD processors runs its AVX2 code at about 40% of the rate of oneDNN's AVX-512
inner product; ``--gemm auto`` (on a CPU: ``onednn``) uses the latter in inference (forward) for both
paths (fcnlib.fast.PackedGemm). The backward pass always uses PyTorch's own kernels.
"""
import argparse
import itertools
import statistics

import torch
import torchvision

from fcnlib import efficiency as ef
from fcnlib import runtime


def measure(model, device, args, geometry, threads, fmt, bs, gemm):
    """One configuration, ``args.rounds`` times: medians of the times, and every round's speedups."""
    if device.type == "cpu":
        threads = runtime.set_threads("fastest" if threads == "auto" else int(threads))
    rounds = [ef.dense_vs_naive(model, size=args.size, device=device, reps=args.reps, geometry=geometry,
                                gemm=gemm, backward=not args.no_backward, single=args.single or None,
                                batch_size=bs or None, channels_last=fmt == "channels_last")
              for _ in range(args.rounds)]
    r = rounds[0]
    ms = {(d, path): statistics.median(x["ms"][d][path] for x in rounds) for d in r["ms"] for path in r["ms"][d]}
    row = {**{k: r[k] for k in ("threads", "gemm", "grid", "patch", "flop_ratio", "overhang")},
           "format": fmt, "batch": r["batch_size"], "ms": ms,
           "speedups": {k: [x["speedup"][k] for x in rounds] for k in r["speedup"]}}
    print(f"\n{geometry} geometry, {device}, {row['threads']} threads, {fmt}, GEMM {row['gemm']}, "
          f"naive batch {row['batch']}: {r['input']}² → {r['grid'][0]}×{r['grid'][1]} grid of "
          f"{r['patch']}-px windows, FLOP ratio {r['flop_ratio']:.2f}×")
    for (d, path), v in ms.items():
        print(f"  {d:8s} {path:8s} {v:9.1f} ms")
    for k, v in row["speedups"].items():
        print(f"  speedup {k:17s} median {statistics.median(v):6.2f}×  (rounds: " + ", ".join(f"{x:.2f}" for x in v) + ")")
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--size", type=int, default=500)
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per round (best kept)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per configuration (median reported)")
    p.add_argument("--geometry", nargs="+", default=["caffe", "torchvision"], choices=ef.GEOMETRIES)
    p.add_argument("--gemm", nargs="+", default=["auto"], choices=ef.GEMMS,
                   help="fully connected layers' GEMM, applied to both paths (auto: oneDNN on a CPU)")
    p.add_argument("--threads", nargs="+", default=["auto"], help="CPU threads: auto (measured) and/or numbers")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[0], help="naive batch sizes (0: all windows)")
    p.add_argument("--formats", nargs="+", default=["channels_last", "contiguous"],
                   choices=["channels_last", "contiguous"])
    p.add_argument("--single", type=int, default=20,
                   help="windows timed one by one, the time scaled to all (0: time them all)")
    p.add_argument("--no-backward", action="store_true")
    args = p.parse_args()
    device = runtime.pick_device(args.device)
    torch.manual_seed(0)
    model = torchvision.models.alexnet().eval()
    ps = ef.paper_speedups()

    summary = []
    for geometry in args.geometry:
        rows = [measure(model, device, args, geometry, *c)
                for c in itertools.product(args.threads, args.formats, args.batch_sizes, args.gemm)]
        # the best configuration of each path, held against each other
        print(f"\n{geometry} geometry: best of each path over {len(rows)} configuration(s), "
              f"median of {args.rounds} round(s):")
        for d in ("forward", "backward"):
            if (d, "dense") not in rows[0]["ms"]:
                continue
            dense = min(rows, key=lambda r: r["ms"][d, "dense"])
            for path in ("batched", "single"):
                naive = min(rows, key=lambda r: r["ms"][d, path])
                ratio = naive["ms"][d, path] / dense["ms"][d, "dense"]
                paper = f"   (paper, one at a time: {ps[d]:.2f}×)" if path == "single" else ""
                print(f"  {d:8s} dense {dense['ms'][d, 'dense']:8.1f} ms [{dense['threads']}t {dense['format']} "
                      f"{dense['gemm']}]  vs {path:7s} {naive['ms'][d, path]:8.1f} ms [{naive['threads']}t "
                      f"{naive['format']} {naive['gemm']} batch {naive['batch']}]  → {ratio:5.2f}×{paper}")
                summary.append((geometry, rows[0], d, path, ratio))

    print(f"\nSummary ({device}, AlexNet, {args.size}×{args.size}; paper: K40c, Caffe, 10×10 grid):")
    print(f"  {'geometry':12s} {'grid':>6s} {'window':>7s} {'FLOP ratio':>11s} {'pass':>9s} {'naive':>8s} "
          f"{'speedup':>8s} {'of FLOP ratio':>14s}")
    for geometry, r, d, path, ratio in summary:
        print(f"  {geometry:12s} {r['grid'][0]:>3d}×{r['grid'][1]:<2d} {r['patch']:>5d}px {r['flop_ratio']:10.2f}× "
              f"{d:>9s} {path:>8s} {ratio:7.2f}× {ratio / r['flop_ratio']:13.0%}")


if __name__ == "__main__":
    main()
