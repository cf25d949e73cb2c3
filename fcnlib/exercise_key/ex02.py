"""The instructor key of notebook 02's exercises: each value reached by a second route (by hand, as
a learner would), each function written as a learner would. Not part of the student edition."""
from fractions import Fraction
from torch import nn

from fcnlib.exercises import register


@register("02.tiny_rf")
def _tiny_rf_by_hand():
    r, j = 1, 1
    for k, s in [(3, 1), (3, 2), (2, 2), (2 * (3 - 1) + 1, 1)]:  # conv, conv /2, pool /2, dilated conv
        r, j = r + (k - 1) * j, j * s
    return (r, j)


@register("02.crop_offset")
def _crop_offset_by_hand():
    centre, jump = Fraction(0), Fraction(1)
    centre += (Fraction(3 - 1, 2) - 10) * jump           # conv 3×3, padding 10: −9
    centre += Fraction(2 - 1, 2) * jump; jump *= 2       # pool 2×2 /2: −8.5, jump 2
    centre += Fraction(3 - 1, 2) * jump                  # conv 3×3: −6.5 (1×1 score: no change)
    centre += -Fraction(4 - 1, 2) * jump / 2; jump /= 2  # upsampling k=4, s=2: −8, jump 1
    return int(-centre)


@register("02.vgg_fc6")
def _vgg_fc6_by_hand():
    r, j = 1, 1
    for convs in (2, 2, 3, 3, 3):
        r += convs * 2 * j   # each 3×3 convolution adds 2 jumps
        r += j               # the 2×2 pooling adds 1 jump ...
        j *= 2               # ... and doubles it
    return r + 6 * j         # fc6: 7×7 at jump 32


@register("02.field_size")
def field_size(net):
    size, jump = 1, 1
    for m in net:
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
            k, s, d = (v if isinstance(v, int) else v[0] for v in (m.kernel_size, m.stride, m.dilation))
            size, jump = size + d * (k - 1) * jump, jump * s
    return (size, jump)
