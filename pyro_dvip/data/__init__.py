"""Data: MNIST digits and the on-the-fly colour Moving MNIST generator."""

from pyro_dvip.data.digits import load_digits
from pyro_dvip.data.moving_mnist import MovingMNIST, MovingMNISTBatch, make_test_set

__all__ = ["MovingMNIST", "MovingMNISTBatch", "load_digits", "make_test_set"]
