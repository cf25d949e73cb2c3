"""Exercises of notebook 02: receptive-field arithmetic and crop offsets (§3, Table 1).

Each expected answer is computed by fcnlib.receptive_field on the very layers; each reference solution
works it out by hand, with Section 3's rule and the centre of a k-window.
"""

import torch
from torch import nn

from .. import receptive_field as rf
from ..exercises import expected, function


def tiny_net() -> nn.Sequential:
    """02.tiny_rf's network."""
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.MaxPool2d(2, 2),
                         nn.Conv2d(8, 8, 3, dilation=2))


def tiny_fcn_paths() -> tuple[list, list]:
    """02.crop_offset's two paths: a small FCN's upsampled scores, and the image (empty path)."""
    return [nn.Conv2d(3, 8, 3, padding=10), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Conv2d(8, 8, 3),
            nn.Conv2d(8, 4, 1), nn.ConvTranspose2d(4, 4, 4, stride=2, bias=False)], []


def vgg16_fc6() -> nn.Sequential:
    """02.vgg_fc6's network: torchvision's VGG16 convolutions, then fc6 as a 7×7 convolution."""
    import torchvision
    with torch.device("meta"):
        return nn.Sequential(*torchvision.models.vgg16().features, nn.Conv2d(512, 4096, 7))


# 02.tiny_rf: (field size, jump) of the last layer of tiny_net()
@expected("02.tiny_rf", hint="start at (1, 1); each layer (k, s) gives (r + (k−1)·j, j·s), and a "
                             "dilation d makes k act like d·(k−1)+1. Answer a tuple (size, jump).")
def _tiny_rf():
    last = rf.receptive_fields(tiny_net())[-1]
    return (last.rf, int(last.jump))


# 02.crop_offset: where must the upsampled scores be cropped to line up with the image?
@expected("02.crop_offset", hint="follow the centre of unit 0 from the input: a k-window with padding p "
                                 "moves it by ((k−1)/2 − p)·jump; a transposed convolution (k, s) by "
                                 "(−(k−1)/2)·jump/s. The crop is minus where the last map's unit 0 sits.")
def _crop_offset():
    bottom, reference = tiny_fcn_paths()
    return rf.crop_offset(bottom, reference)


# 02.vgg_fc6: the receptive field of FCN-VGG16's fc6 (Table 1)
@expected("02.vgg_fc6", hint="VGG16: five blocks of 2, 2, 3, 3, 3 convolutions 3×3, each block ending "
                             "with a 2×2 pooling of stride 2; then fc6 is 7×7. Answer one integer.")
def _vgg_fc6():
    return rf.receptive_fields(vgg16_fc6())[-1].rf


# 02.field_size: write the §3 rule for a stack of layers
def _field_cases():
    return [(tiny_net(),),
            (nn.Sequential(nn.Conv2d(3, 4, 5, stride=2), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Conv2d(4, 4, 3)),),
            (nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, dilation=4), nn.MaxPool2d(2, 2),
                           nn.Conv2d(4, 4, 1), nn.ReLU()),)]


@function("02.field_size", _field_cases,
          hint="walk the layers keeping (size, jump) from (1, 1): a layer with kernel k, stride s and "
               "dilation d gives (size + (d·(k − 1))·jump, jump·s); pointwise layers change nothing. "
               "Return the tuple (size, jump) of the last layer.")
def _field_size(net):
    last = rf.receptive_fields(net)[-1]
    return (last.rf, int(last.jump))
