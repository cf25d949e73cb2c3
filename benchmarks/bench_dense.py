"""Dense output from one stride-8 net at 500×500: shift-and-stitch against filter rarefaction and
against bilinear deconvolution (Sections 3.2, 3.3), measured side by side in one run.

    python benchmarks/bench_dense.py [--device cpu|cuda] [--reps 3] [--size 500] [--threads N]

The net is fcnlib.stitch.strided_net (the small net of notebook 03's identity check, random weights: time does not
depend on them), in eval mode, float32. Each method gives one 500×500 score map on the pixel grid
(fcnlib.stitch.dense_scores): shift-and-stitch runs the net on the 64 shifted inputs (in batches of
--chunk), rarefaction runs the dilated net once, deconvolution runs the net once and upsamples ×8.
One warm-up, then --reps repetitions with the three methods interleaved; medians. Prints the time
ratios stitch / rarefied and stitch / deconvolution, and the FLOP ratios beside them.
"""
import argparse

import torch

from fcnlib import runtime, stitch, upsample
from fcnlib.runtime import pick_device


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--size", type=int, default=500)
    p.add_argument("--chunk", type=int, default=8, help="shifts per forward pass of shift-and-stitch")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    torch.manual_seed(0)
    net = stitch.strided_net().to(device).eval()
    f = stitch.geometry(net).jump
    rnet = stitch.rarefy(net)
    up = upsample.upsample_layer(21, f, depthwise=True).to(device)
    x = torch.randn(1, 3, args.size, args.size, device=device)
    fns = {"stitch": lambda: stitch.dense_scores(net, x, "stitch", chunk=args.chunk),
           "rarefied": lambda: stitch.dense_scores(net, x, "rarefied", rnet=rnet),
           "deconv": lambda: stitch.dense_scores(net, x, "deconv", upsample=up)}
    outs = {}
    flops = {k: runtime.flop_count(lambda k=k, fn=fn: outs.__setitem__(k, fn())) for k, fn in fns.items()}
    assert all(o.shape == (1, 21, args.size, args.size) for o in outs.values())
    secs = runtime.median_times(fns, device, reps=args.reps, warmup=1)
    print(f"device {device}, threads {torch.get_num_threads()}, one {args.size}x{args.size} image, "
          f"stride-{f} net ({f * f} shifts, chunk {args.chunk}), median of {args.reps}")
    for k in fns:
        print(f"{k:9s} {secs[k] * 1e3:10.1f} ms  {flops[k] / 1e9:8.2f} GFLOP")
    print(f"ratio stitch / rarefied       {secs['stitch'] / secs['rarefied']:8.1f}x time  "
          f"{flops['stitch'] / flops['rarefied']:6.1f}x FLOPs")
    print(f"ratio stitch / deconvolution  {secs['stitch'] / secs['deconv']:8.1f}x time  "
          f"{flops['stitch'] / flops['deconv']:6.1f}x FLOPs")


if __name__ == "__main__":
    main()
