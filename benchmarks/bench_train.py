"""The embedded FCN-8s training step (forward + backward + SGD update): the course's training path
against the plain eager step, measured side by side in one run.

    python benchmarks/bench_train.py [--device cpu|cuda] [--sizes 64 128] [--batch 10] [--reps 7]

- **plain**: the step written out as a textbook has it — the net as Fig. 3 draws it (the final
  bilinear upsampling of the whole score map by a transposed convolution, then the crop: the plain
  ``fcnlib.models.FCN``), NCHW fp32 eager, ``torch.optim.SGD`` with the paper's recipe,
  ``F.cross_entropy``.
- **+ windowed upsampling**: the same with the course's final upsampling — only the cells that reach
  the image, as two matrix products per channel (``fcnlib.fast.windowed_upsampling``; the same sums).
- **course**: what ``fcnlib.train.train`` runs — windowed upsampling, with the model prepared by
  ``fcnlib.runtime.prepare_model`` (channels_last), the batch made channels_last,
  ``fcnlib.train.sgd_step`` (bf16 autocast on CUDA).

Both start from the same weights (the stand-in VGG16 transplanted into FCN-8s, the embedded tier's
model) and see the same batch; times are medians of ``--reps`` steps with the methods interleaved
(``fcnlib.runtime.median_times``), so load elsewhere slows them alike. Tried on the course's 2-core
CPU (torch 2.14) and not kept: a fused SGD update 0.9–0.95× (slower); ``torch.compile`` of the
forward 1.08× after 37 s of compiling (not worth it for minutes-long trainings); bf16 autocast on the
CPU 1.0× (the stand-in's layers are too narrow for the CPU's bf16 units to pay).
"""
import argparse
import contextlib
import copy

import torch
import torch.nn.functional as F

from fcnlib import data, fast, pretrain, runtime, train, transplant, world


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--threads", default="auto", help="CPU threads: auto (every core), fastest (measured) or N")
    args = p.parse_args()
    device = runtime.pick_device(args.device)
    if device.type == "cpu":
        runtime.set_threads(args.threads if args.threads in ("auto", "fastest") else int(args.threads))
    standin = pretrain.pretrained("vgg16")
    start = transplant.fcn_from_classifier(standin, "8s", data.NUM_CLASSES, transplant.equivalent_pad(standin),
                                       source="standin-vgg16")
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, FCN-8s "
          f"(stand-in VGG16), batch {args.batch}")
    for size in args.sizes:
        X, Y = world.scenes("train", args.batch, size=size).tensors()
        X, Y = X.to(device), Y.to(device)

        def sgd(model, **kw):
            return torch.optim.SGD(train.param_groups(model, 0.01, 5e-4), lr=0.01, momentum=0.9, **kw)

        plain = copy.deepcopy(start).to(device).train()
        opt_plain = sgd(plain)
        windowed = copy.deepcopy(start).to(device).train()
        opt_windowed = sgd(windowed)

        def plain_step(model=plain, opt=opt_plain):
            loss = F.cross_entropy(model(X), Y, ignore_index=data.VOID)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        course = runtime.prepare_model(copy.deepcopy(start), device).train()
        opt_course = sgd(course)
        fns = {"plain": plain_step,
               "course": lambda: train.sgd_step(course, opt_course, X, Y, device=device),
               "+ windowed upsampling": lambda: plain_step(windowed, opt_windowed)}
        with contextlib.ExitStack() as stack:   # the windowed paths, as fcnlib.train runs them
            for model in (windowed, course):
                stack.enter_context(fast.windowed_upsampling(model))
            times = runtime.median_times(fns, device, reps=args.reps, warmup=2, grad=True)
        flops = 3 * runtime.flop_count(plain, X)      # forward + backward ≈ 3 × forward
        print(f"\n{size}×{size} px: forward+backward ≈ {flops / 1e9:.1f} GFLOP per step")
        for name, t in times.items():
            print(f"  {name:22s} {t * 1e3:8.1f} ms/step  {flops / t / 1e9:6.1f} GFLOP/s  "
                  f"{times['plain'] / t:5.2f}× plain")


if __name__ == "__main__":
    main()
