"""kdtool: distil ImageNet-pretrained CNNs into tiny skin-lesion classifiers.

This module holds the version only and never imports TensorFlow, so that
``kdtool bench`` and ``kdtool predict`` run with the light install on a device.
"""

__version__ = "0.1.0"
