"""The skip nets' frontier on embedded scenes: mean IU against training time, FCN-32s → 16s → 8s.

    python tools/frontier_skip.py --iters 1000 500 500     # the world's scenes and recipe by default

Trains the stand-in VGG16's FCN-32s, then FCN-16s from it and FCN-8s from that (§4.2: each new skip
zero-initialized, the learning rate divided by ``--divisor`` when the skips come in), evaluating the
four metrics on the val split ``--evals`` times per stage, and prints one line per evaluation:
stage, step, training seconds so far (evaluation excluded), mean IU, pixel accuracy. It is how the
embedded tier's scene size and schedule are chosen against the course's time budget (issue: the
embedded tier convinces), and writes nothing.

One run (2026-12-02) on the course's 2-core CPU, torch 2.14, 2 threads, the defaults (the world's
128-px scenes, 2000 train / 100 val scenes, batch 10, lr 0.01 then 0.005, seed 0) with the shipped
stand-in VGG16 (85.1% on its crops):

| stage | steps of 10 images | training s | mean IU at the quarter marks |
|---|---|---|---|
| FCN-32s | 1000 | 91 | 32.4, 35.5, 40.0, 44.7 |
| FCN-16s | 500 | 45 | 45.4, 49.7, 50.5, 52.7 |
| FCN-8s | 500 | 47 | 52.5, 55.0, 57.4, 57.2 |

Notebook 04 gives FCN-32s 500 steps and each later stage 250 (three seeds: FCN-8s 52.0, 51.5–52.5);
twice those steps bring FCN-32s to 44.7 and FCN-8s to 57 on this seed, at about twice the time.
"""
from __future__ import annotations

import argparse
import time

from fcnlib import data, pretrain, runtime, staged, surgery, train, transplant, world


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    R = world.RECIPE
    p.add_argument("--size", type=int, default=world.SIZE)
    p.add_argument("--radius", type=float, nargs=2, default=None, help="of the side (default: the world's px)")
    p.add_argument("--objects", type=int, nargs=2, default=None)
    p.add_argument("--fixed", type=int, default=0, help="also train FCN-32s-fixed (only score_fr) this many steps")
    p.add_argument("--n-train", type=int, default=world.N_TRAIN)
    p.add_argument("--n-val", type=int, default=world.N_VAL)
    p.add_argument("--iters", type=int, nargs=3, default=(1000, 500, 500), help="FCN-32s, 16s, 8s")
    p.add_argument("--batch", type=int, default=R["batch"])
    p.add_argument("--lr", type=float, default=R["lr"], help="FCN-32s's; the skips get lr / divisor")
    p.add_argument("--divisor", type=float, default=R["divisor"])
    p.add_argument("--evals", type=int, default=4, help="evaluations per stage")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    device = runtime.pick_device(args.device)
    threads = runtime.set_threads("auto") if device.type == "cpu" else None
    runtime.seed_everything(args.seed)
    standin = pretrain.pretrained("vgg16")
    scenes = world.scene_kwargs(args.size, args.objects)
    if args.radius is not None:
        scenes["radius"] = tuple(args.radius)
    train_xy = data.EmbeddedScenes("train", n=args.n_train, **scenes).tensors()
    val_xy = data.EmbeddedScenes("val", n=args.n_val, **scenes).tensors()
    background = (val_xy[1] == 0).float().mean().item()
    print(f"{device}, {threads} threads; {args.size}-px scenes, radius {scenes['radius']}; background "
          f"{background:.0%} of val pixels")

    def evaluate(model):
        m = staged.evaluate(model, val_xy, data.NUM_CLASSES, device=device)
        return {k: v for k, v in m.items() if k != "per_class_iu"}

    def fcn32s():
        return transplant.fcn_from_classifier(standin, "32s", data.NUM_CLASSES, transplant.equivalent_pad(standin),
                                          source="standin-vgg16")

    t0 = time.perf_counter()
    if args.fixed:
        cfg = train.TrainConfig(iters=args.fixed, batch_size=args.batch, lr=args.lr, seed=args.seed * 100, ckpt_every=0,
                                eval_every=max(1, args.fixed // args.evals))
        hist = train.train(surgery.freeze_backbone(fcn32s()), train_xy, cfg, device=device, eval_fn=evaluate,
                           desc="FCN-32s-fixed")
        for e in hist.evals:
            print(f"32s-fixed step {e['step']:5d}  {e['time']:7.1f} s  mean IU {100 * e['mean_iu']:5.1f}  "
                  f"pixel acc. {100 * e['pixel_acc']:5.1f}", flush=True)
    model = fcn32s()
    plan = (("FCN-32s", None, args.lr), ("FCN-16s", surgery.fcn16s_from, args.lr / args.divisor),
            ("FCN-8s", surgery.fcn8s_from, args.lr / args.divisor))
    for stage, ((name, upgrade, lr), iters) in enumerate(zip(plan, args.iters), start=1):
        if upgrade is not None:
            model = upgrade(model)
        # the stage seeds of notebook 04 (run seed × 100 + stage), so its runs are this run's first steps
        cfg = train.TrainConfig(iters=iters, batch_size=args.batch, lr=lr, seed=args.seed * 100 + stage, ckpt_every=0,
                                eval_every=max(1, iters // args.evals))
        hist = train.train(model, train_xy, cfg, device=device, eval_fn=evaluate, desc=name)
        for e in hist.evals:
            print(f"{name:8s} step {e['step']:5d}  {e['time']:7.1f} s  mean IU {100 * e['mean_iu']:5.1f}  "
                  f"pixel acc. {100 * e['pixel_acc']:5.1f}", flush=True)
    print(f"total {time.perf_counter() - t0:.0f} s (evaluations included)")


if __name__ == "__main__":
    main()
