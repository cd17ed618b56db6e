"""Weights in the official code's layout give flowspec the official log-likelihood (float64).

Each test writes a small independent reference in plain torch ops that follows the official
formulas, fills it with random weights named and shaped as the official code stores them, loads
the same weights into flowspec's layers (the only place the two layouts meet), and compares the
log-likelihood ``log N(z; 0, I) + log|det dz/dx|`` of a batch.

- Glow (openai/glow ``model.py`` ``revnet2d_step`` and ``f``; ``tfops.py`` ``actnorm``,
  ``conv2d_zeros``), NHWC as TensorFlow has it: actnorm ``(x + b) exp(3 logs)``, invertible 1x1 conv
  ``x @ W``, coupling ``z2 = (z2 + h[..., 0::2]) sigmoid(h[..., 1::2] + 2)`` with
  ``h = f(z1)`` on the first half. Glow's ``conv2d`` also appends a border-indicator channel
  (``edge_bias``), which flowspec's conv conditioner does not have: the reference leaves it out.
- RealNVP (tensorflow/models ``research/real_nvp/real_nvp_multiscale_dataset.py``
  ``masked_conv_aff_coupling``): the resnet's ``2C`` outputs split into ``shift`` (first ``C``) and
  ``log_rescaling`` (last ``C``), ``log s = scale tanh(log_rescaling)`` with one learned scalar,
  ``y = (x + shift) exp(log s)`` on the entries the checkerboard mask leaves free.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from flowspec.layers.actnorm import ActNormConfig
from flowspec.layers.conditioners import ConvConditioner
from flowspec.layers.coupling import CouplingConfig
from flowspec.layers.invconv import InvConvConfig

B, C, H, W, WIDTH = 3, 4, 6, 6, 8


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    return (-0.5 * z * z - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)


def _conv_nhwc(x, w, b=None):
    """TensorFlow's ``conv2d(x, w, SAME)``: x NHWC, w HWIO."""
    y = F.conv2d(x.permute(0, 3, 1, 2), w.permute(3, 2, 0, 1), padding=w.shape[0] // 2).permute(0, 2, 3, 1)
    return y if b is None else y + b


def _glow_weights(generator) -> dict[str, torch.Tensor]:
    """A Glow step's variables, named and shaped as openai/glow stores them (NHWC / HWIO)."""
    def rand(*shape, scale=0.3):
        return scale * torch.randn(*shape, generator=generator)

    rotation = torch.linalg.qr(torch.randn(C, C, generator=generator))[0]
    return {"actnorm/b": rand(1, 1, 1, C), "actnorm/logs": rand(1, 1, 1, C, scale=0.1),
            "invconv/W": rotation,
            "f1/l_1/W": rand(3, 3, C // 2, WIDTH), "f1/l_1/actnorm/b": rand(1, 1, 1, WIDTH),
            "f1/l_1/actnorm/logs": rand(1, 1, 1, WIDTH, scale=0.1),
            "f1/l_2/W": rand(1, 1, WIDTH, WIDTH), "f1/l_2/actnorm/b": rand(1, 1, 1, WIDTH),
            "f1/l_2/actnorm/logs": rand(1, 1, 1, WIDTH, scale=0.1),
            "f1/l_last/W": rand(3, 3, WIDTH, C), "f1/l_last/b": rand(1, 1, 1, C),
            "f1/l_last/logs": rand(1, C, scale=0.1)}


def _glow_step_reference(x: torch.Tensor, v: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """openai/glow's revnet2d_step (actnorm, invconv, affine coupling) on NHWC ``x``."""
    logdet = torch.zeros(x.shape[0])
    x = (x + v["actnorm/b"]) * torch.exp(3 * v["actnorm/logs"])
    logdet = logdet + H * W * (3 * v["actnorm/logs"]).sum()
    x = x @ v["invconv/W"]
    logdet = logdet + H * W * torch.linalg.slogdet(v["invconv/W"])[1]
    z1, z2 = x[..., : C // 2], x[..., C // 2:]
    h = _conv_nhwc(z1, v["f1/l_1/W"])
    h = torch.relu((h + v["f1/l_1/actnorm/b"]) * torch.exp(3 * v["f1/l_1/actnorm/logs"]))
    h = _conv_nhwc(h, v["f1/l_2/W"])
    h = torch.relu((h + v["f1/l_2/actnorm/b"]) * torch.exp(3 * v["f1/l_2/actnorm/logs"]))
    h = (_conv_nhwc(h, v["f1/l_last/W"]) + v["f1/l_last/b"]) * torch.exp(3 * v["f1/l_last/logs"])
    shift, scale = h[..., 0::2], torch.sigmoid(h[..., 1::2] + 2.0)
    z2 = (z2 + shift) * scale
    logdet = logdet + torch.log(scale).flatten(1).sum(1)
    return torch.cat([z1, z2], dim=-1), logdet


def _glow_coupling() -> CouplingConfig:
    """Glow's coupling in flowspec's terms: the second half transformed (parity 1), conditioned on
    the first; shift and scale interleaved; ``(x + t) sigmoid(h + 2)``."""
    conditioner = ConvConditioner(hidden=WIDTH, kernel=3, depth=2, actnorm=True, learned_scale=True)
    return CouplingConfig(mask="channel", parity=1, layout="interleaved", scale="sigmoid", order="shift_scale",
                          conditioner=conditioner)


def _load_glow(layers, v: dict) -> None:
    """Glow's variables into flowspec's actnorm, invconv and coupling (NHWC -> NCHW, HWIO -> OIHW,
    ``logs * 3`` -> log-scale)."""
    actnorm, invconv, coupling = layers

    def channels(t):
        return t.reshape(1, -1, 1, 1)

    def oihw(w):
        return w.permute(3, 2, 0, 1).contiguous()

    with torch.no_grad():
        actnorm.bias.copy_(channels(v["actnorm/b"]))
        actnorm.log_scale.copy_(channels(3 * v["actnorm/logs"]))
        actnorm.initialized.fill_(True)
        invconv.weight.copy_(v["invconv/W"].T)
        conv1, norm1, _, conv2, norm2, _, last, learned = coupling.net
        for conv, norm, name in ((conv1, norm1, "f1/l_1"), (conv2, norm2, "f1/l_2")):
            conv.weight.copy_(oihw(v[f"{name}/W"]))
            norm.bias.copy_(channels(v[f"{name}/actnorm/b"]))
            norm.log_scale.copy_(channels(3 * v[f"{name}/actnorm/logs"]))
            norm.initialized.fill_(True)
        last.weight.copy_(oihw(v["f1/l_last/W"]))
        last.bias.copy_(v["f1/l_last/b"].flatten())
        learned.logs.copy_(channels(v["f1/l_last/logs"]))


def test_glow_weights_give_glow_log_likelihood():
    generator = torch.Generator().manual_seed(0)
    weights = _glow_weights(generator)
    x_nhwc = torch.randn(B, H, W, C, generator=generator)
    z_ref, logdet_ref = _glow_step_reference(x_nhwc, weights)

    configs = [ActNormConfig(), InvConvConfig(lu=False), _glow_coupling()]
    layers = [config.build((C, H, W)).double().eval() for config in configs]
    _load_glow(layers, weights)
    z, logdet = x_nhwc.permute(0, 3, 1, 2), torch.zeros(B)
    for layer in layers:
        z, step = layer(z)
        logdet = logdet + step

    torch.testing.assert_close(z.permute(0, 2, 3, 1), z_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(_normal_log_prob(z) + logdet, _normal_log_prob(z_ref) + logdet_ref,
                               rtol=1e-10, atol=1e-10)


def test_default_blocks_layout_does_not_read_glow_weights():
    """The check has teeth: flowspec's default parametrisation (blocks, s x + t, first half
    transformed) gives another log-likelihood from the same weights."""
    generator = torch.Generator().manual_seed(1)
    weights = _glow_weights(generator)
    x_nhwc = torch.randn(B, H, W, C, generator=generator)
    z_ref, logdet_ref = _glow_step_reference(x_nhwc, weights)
    for change in ({"layout": "blocks"}, {"order": "scale_shift"}, {"parity": 0}):
        config = _glow_coupling().model_dump()
        config.update(change)
        configs = [ActNormConfig(), InvConvConfig(lu=False), CouplingConfig(**config)]
        layers = [c.build((C, H, W)).double().eval() for c in configs]
        _load_glow(layers, weights)
        z, logdet = x_nhwc.permute(0, 3, 1, 2), torch.zeros(B)
        for layer in layers:
            z, step = layer(z)
            logdet = logdet + step
        gap = (_normal_log_prob(z) + logdet - _normal_log_prob(z_ref) - logdet_ref).abs().max()
        assert gap > 1e-3, change


def _checkerboard(parity: int) -> torch.Tensor:
    """1 where an entry conditions (official: ``mod(mask_in + row + col, 2)``)."""
    rows, cols = torch.arange(H).view(-1, 1), torch.arange(W).view(1, -1)
    return ((rows + cols + parity) % 2).to(torch.get_default_dtype())


def test_realnvp_coupling_parametrisation():
    """RealNVP's affine coupling, given the same conditioner output: the official split of the
    resnet's ``2C`` channels into shift and log-rescaling, the learned tanh scale, the order
    ``(x + shift) exp(log s)``, and the masking of both by the free entries."""
    generator = torch.Generator().manual_seed(2)
    config = CouplingConfig(mask="checkerboard", parity=1, scale="tanh", order="shift_scale",
                            conditioner=ConvConditioner(hidden=WIDTH, depth=2, zero_init=False))
    coupling = config.build((C, H, W)).double().eval()
    scale = 0.7
    with torch.no_grad():
        coupling.transform.tanh_scale.fill_(scale)
    x = torch.randn(B, C, H, W, generator=generator)
    z, logdet = coupling(x)

    conditioning = _checkerboard(1)
    res = coupling.net(x * conditioning, None)  # the conditioner's 2C output channels, NCHW
    shift, log_rescaling = res[:, :C], res[:, C:]
    log_rescaling = scale * torch.tanh(log_rescaling)
    free = 1.0 - conditioning
    shift, log_rescaling = shift * free, log_rescaling * free
    z_ref = (x + shift) * torch.exp(log_rescaling)
    logdet_ref = log_rescaling.flatten(1).sum(1)

    torch.testing.assert_close(z, z_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(_normal_log_prob(z) + logdet, _normal_log_prob(z_ref) + logdet_ref,
                               rtol=1e-10, atol=1e-10)


def test_tanh_scale_starts_as_the_identity():
    """RealNVP's learned scale starts at 0: a fresh coupling changes nothing in scale (only shifts)."""
    config = CouplingConfig(mask="channel", scale="tanh", conditioner=ConvConditioner(hidden=WIDTH, zero_init=False))
    coupling = config.build((C, H, W)).double()
    _, logdet = coupling(torch.randn(B, C, H, W))
    assert torch.equal(logdet, torch.zeros(B))
