"""The benchmark's hand-written baseline computes the same bound as TraceMeanField_ELBO."""

import torch

from benchmarks.handwritten import handwritten_loss
from pyro_dvip import DVIP, NegELBO


def test_handwritten_loss_equals_pyro_meanfield_with_the_same_noise():
    dvip = DVIP(3, 2, image_size=16, width=4).eval()  # eval: BatchNorm is deterministic
    x = torch.rand(4, 5, 3, 16, 16)
    torch.manual_seed(0)
    hand = handwritten_loss(dvip, x)
    torch.manual_seed(0)  # Pyro draws eps for z_1 ... z_T in the same order
    pyro_loss = NegELBO(dvip, "meanfield")(x)
    torch.testing.assert_close(hand, pyro_loss, rtol=1e-5, atol=1e-3)


def test_handwritten_gradients_equal_pyro_meanfield_gradients():
    x = torch.rand(2, 3, 3, 16, 16)
    grads = []
    for loss_fn in (lambda m: handwritten_loss(m, x), lambda m: NegELBO(m, "meanfield")(x)):
        torch.manual_seed(1)
        dvip = DVIP(2, 3, image_size=16, width=4)
        torch.manual_seed(2)
        loss_fn(dvip).backward()
        grads.append({n: p.grad for n, p in dvip.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grad, grads[1][name], rtol=1e-4, atol=1e-4, msg=name)
