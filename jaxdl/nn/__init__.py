"""Building blocks shared by every model in the zoo."""

from jaxdl.nn.activations import ACTIVATIONS, Maxout, activation, maxout
from jaxdl.nn.conv import BatchNorm, Conv, ConvBN, ConvTranspose, he_normal_fan_out
from jaxdl.nn.dropout import Dropout

__all__ = [
    "ACTIVATIONS",
    "BatchNorm",
    "Conv",
    "ConvBN",
    "ConvTranspose",
    "Dropout",
    "Maxout",
    "activation",
    "he_normal_fan_out",
    "maxout",
]
