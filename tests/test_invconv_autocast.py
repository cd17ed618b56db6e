"""Under bfloat16 autocast the 1x1 convolution's matrix and inverse stay in the parameters' precision.

A bfloat16 ``P L U`` is not the matrix whose log-det (``sum log_s``) the layer reports, and CUDA has no
bfloat16 ``linalg.inv``: sampling under ``torch.autocast("cuda", torch.bfloat16)`` failed on every
spec with an LU 1x1 conv before. The CPU autocast path casts matmuls the same way, so it is checked here.
"""

import pytest
import torch

from flowspec.layers.invconv import InvConvConfig


@pytest.mark.parametrize("lu", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_weights_and_inverse_are_full_precision_under_autocast(lu, training):
    layer = InvConvConfig(lu=lu).build((4, 3, 3)).train(training)
    reference = layer.matrix().detach()
    x = torch.randn(5, 4, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.set_grad_enabled(training):
        weight, inverse, log_abs_det = layer._weights()
        y, _ = layer(x)
        x_back, _ = layer.inverse(y.float())
    assert weight.dtype == torch.float32
    assert torch.equal(weight.detach(), reference)
    assert torch.allclose(log_abs_det, torch.linalg.slogdet(reference)[1], atol=1e-5)
    if inverse is not None:
        assert inverse.dtype == torch.float32
    # the convolutions themselves run in bfloat16 (about 3 significant digits), the matrices do not
    assert (x_back - x).abs().max() < 0.05
