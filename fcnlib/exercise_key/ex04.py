"""The instructor key of notebook 04's exercises: each value reached by a second route (by hand, as
a learner would), each function written as a learner would. Not part of the student edition."""

from fcnlib.exercises import register


@register("04.score_cells")
def _score_cells_by_hand():
    n = 500 + 2 * 100 - 3 + 1       # conv1_1 (3×3, padding 100): 698; the other 3×3 convs keep the size
    for _ in range(5):              # a 2×2/2 pooling in ceil mode: ceil((n − 2) / 2) + 1 = ceil(n / 2)
        n = -(-n // 2)              # 349, 175, 88, 44, 22
    return n - 7 + 1                # fc6: 7×7, no padding → 16


@register("04.pool4_crop")
def _pool4_crop_by_hand():
    c = -99.0                          # conv1_1 with padding 100: output 0 is centred on input −99
    stride = 1
    for _ in range(4):                 # two 3×3 convs (centres unchanged) then a 2×2 pool: + (2 − 1)/2 · stride
        c += 0.5 * stride
        stride *= 2
    pool4 = c                          # stride 16
    c += 0.5 * stride                  # pool5, stride 32
    stride *= 2
    c += 3 * stride                    # fc6 7×7: centre moves by (7 − 1)/2 cells
    up2 = c + stride * (0 - 1.5) / 2   # upscore2 (kernel 4, stride 2): unit 0 at (0 − 3/2)/2 coarse cells
    return int((up2 - pool4) / 16)


@register("04.equivalent_pad")
def _equivalent_pad_by_hand():
    return 100 - 32 * (7 - 1) // 2 + 32 * (2 - 1) // 2   # 100 − 96 + 16 = 20


@register("04.lr_schedule")
def _lr_schedule_by_hand():
    return [1e-4, 1e-6, 1e-8]


@register("04.fuse")
def fuse(upsampled, skip_scores, offset):
    H, W = upsampled.shape[-2:]
    return upsampled + skip_scores[:, :, offset:offset + H, offset:offset + W]
