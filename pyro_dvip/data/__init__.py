"""Data: MNIST digits, the on-the-fly colour Moving MNIST generator, occluding discs (beyond
the paper), and real video."""

from pyro_dvip.data.digits import load_digits
from pyro_dvip.data.discs import MovingDiscs, make_disc_test_set
from pyro_dvip.data.moving_mnist import MovingMNIST, MovingMNISTBatch, make_test_set
from pyro_dvip.data.video import (
    VideoBatch,
    VideoReport,
    VideoStream,
    contact_sheet,
    inspect_video,
    make_video_data,
)

__all__ = [
    "MovingDiscs",
    "MovingMNIST",
    "MovingMNISTBatch",
    "VideoBatch",
    "VideoReport",
    "VideoStream",
    "contact_sheet",
    "inspect_video",
    "load_digits",
    "make_disc_test_set",
    "make_test_set",
    "make_video_data",
]
