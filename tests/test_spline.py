"""The rational-quadratic spline's edge cases (Durkan et al. 2019, arXiv:1906.04032): outside the
bound, far outside, exactly at the knots and the bound, in float64."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from flowspec.layers.transforms.spline import SplineTransform

BINS, BOUND = 5, 2.0


def _spline(seed: int = 0, shape=(4, 3)):
    torch.manual_seed(seed)
    config = SplineTransform(bins=BINS, bound=BOUND)
    params = 2.0 * torch.randn(shape[0], config.params_per_entry, *shape[1:], dtype=torch.float64)
    return config.build(), params


def _knots(spline, params):
    xs, ys, _ = spline._bins(params)
    return xs.movedim(-1, 1), ys.movedim(-1, 1)  # (B, K+1, ...)


def test_outside_the_bound_is_the_identity_with_logdet_zero():
    spline, params = _spline()
    x = torch.tensor([-1e6, -7.0, -BOUND - 1e-9, BOUND + 1e-9, 3.5, 1e6], dtype=torch.float64)
    x = x.view(-1, 1).expand(-1, 3).contiguous()[:4]
    params = params[:4]
    y, logdet = spline(x, params)
    assert torch.equal(y, x)
    assert torch.equal(logdet, torch.zeros_like(logdet))
    x_back, inverse_logdet = spline.inverse(x, params)
    assert torch.equal(x_back, x) and torch.equal(inverse_logdet, torch.zeros_like(logdet))


def test_zero_parameters_are_the_identity():
    spline, params = _spline()
    x = torch.linspace(-1.5 * BOUND, 1.5 * BOUND, 12, dtype=torch.float64).view(4, 3)
    y, logdet = spline(x, torch.zeros_like(params))
    torch.testing.assert_close(y, x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(logdet, torch.zeros_like(logdet), rtol=0, atol=1e-12)


@pytest.mark.parametrize("value", [-1e6, -BOUND, BOUND, 1e6])
def test_no_nan_far_out_and_at_the_bound_values_and_gradients(value):
    spline, params = _spline()
    params.requires_grad_(True)
    x = torch.full((4, 3), value, dtype=torch.float64, requires_grad=True)
    y, logdet = spline(x, params)
    x_back, inverse_logdet = spline.inverse(y, params)
    (y.sum() + logdet.sum() + x_back.sum() + inverse_logdet.sum()).backward()
    for t in (y, logdet, x_back, inverse_logdet, x.grad, params.grad):
        assert torch.isfinite(t).all()
    torch.testing.assert_close(y, x.detach(), rtol=0, atol=1e-12)  # the knots at +-B are fixed points
    torch.testing.assert_close(x_back, x.detach(), rtol=0, atol=1e-12)


def test_knots_map_to_knots_and_the_inverse_is_exact_there():
    spline, params = _spline(seed=1)
    xs, ys = _knots(spline, params)  # every knot, the +-B ends included
    x = xs.detach().movedim(1, 0).reshape(-1, *xs.shape[2:])  # knot j of every entry, stacked on the batch
    p = params.repeat(BINS + 1, 1, 1)
    y, logdet = spline(x, p)
    expected = ys.movedim(1, 0).reshape(-1, *ys.shape[2:])
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)
    assert torch.isfinite(logdet).all()
    x_back, inverse_logdet = spline.inverse(expected, p)
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-12)
    torch.testing.assert_close(inverse_logdet, -logdet, rtol=0, atol=1e-10)


def test_logdet_is_the_log_derivative_and_the_round_trip_is_exact():
    spline, params = _spline(seed=2, shape=(64, 3))
    x = (1.2 * BOUND * torch.rand(64, 3, dtype=torch.float64) * 2 - 1.2 * BOUND).requires_grad_(True)
    y, logdet = spline(x, params)
    (derivative,) = torch.autograd.grad(y.sum(), x)  # elementwise: the Jacobian is diagonal
    torch.testing.assert_close(logdet, torch.log(derivative), rtol=1e-10, atol=1e-10)
    x_back, inverse_logdet = spline.inverse(y.detach(), params)
    torch.testing.assert_close(x_back, x.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(inverse_logdet, -logdet.detach(), rtol=1e-10, atol=1e-10)


def test_monotone_with_tiny_bins_and_derivatives():
    config = SplineTransform(bins=8, bound=1.0, min_width=1e-4, min_height=1e-4, min_derivative=1e-4)
    spline = config.build()
    torch.manual_seed(3)
    params = 8.0 * torch.randn(1, config.params_per_entry, 2000, dtype=torch.float64).expand(1, -1, -1)
    x = torch.linspace(-1.0, 1.0, 2000, dtype=torch.float64).view(1, -1)
    y, _ = spline(x, params[:, :, :1].expand(-1, -1, 2000))
    assert (y[0, 1:] >= y[0, :-1]).all()
    x_back, _ = spline.inverse(y, params[:, :, :1].expand(-1, -1, 2000))
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-8)


@pytest.mark.parametrize("options, field", [({"bins": 1}, "bins"), ({"bound": 0.0}, "bound"),
                                            ({"bound": -1.0}, "bound"), ({"min_derivative": 1.5}, "min_derivative"),
                                            ({"bins": 4, "min_width": 0.3}, "min_width")])
def test_bad_options_are_rejected_naming_the_field(options, field):
    with pytest.raises(ValidationError, match=field):
        SplineTransform(**options)
