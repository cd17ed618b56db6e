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
  ``y = (x + shift) exp(log s)`` on the entries the checkerboard mask leaves free. The resnet body
  follows the PyTorch port (chrischute/real-nvp ``models/resnet/resnet.py``, ``residual_block.py``),
  whose parameter names the reference's weights carry: input batch norm, doubling, ``[x, -x]``,
  weight-normed convs, batch norm inside the blocks, 1x1 skips summed into the output (the port
  splits its output as ``s, t``; the official TensorFlow split, shift first, is the one used here).
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


def _port_weights(generator, c: int, hidden: int, blocks: int) -> dict[str, torch.Tensor]:
    """A RealNVP coupling's resnet in the port's state-dict names (``st_net.``...): batch norms
    with gain, bias and running statistics; weight-normed convs as ``weight_g``, ``weight_v``, ``bias``."""
    def rand(*shape, scale=0.3):
        return scale * torch.randn(*shape, generator=generator)

    w: dict[str, torch.Tensor] = {}

    def norm(name, ch):
        w[f"{name}.weight"], w[f"{name}.bias"] = 1 + rand(ch, scale=0.1), rand(ch, scale=0.1)
        w[f"{name}.running_mean"], w[f"{name}.running_var"] = rand(ch, scale=0.2), 0.5 + torch.rand(ch, generator=generator)

    def conv(name, cin, cout, k, bias=True):
        w[f"{name}.conv.weight_v"] = rand(cout, cin, k, k)
        w[f"{name}.conv.weight_g"] = 0.5 + torch.rand(cout, 1, 1, 1, generator=generator)
        if bias:
            w[f"{name}.conv.bias"] = rand(cout, scale=0.1)

    norm("in_norm", c)
    conv("in_conv", 2 * c, hidden, 3)
    conv("in_skip", hidden, hidden, 1)
    for i in range(blocks):
        norm(f"blocks.{i}.in_norm", hidden)
        conv(f"blocks.{i}.in_conv", hidden, hidden, 3, bias=False)
        norm(f"blocks.{i}.out_norm", hidden)
        conv(f"blocks.{i}.out_conv", hidden, hidden, 3)
        conv(f"skips.{i}", hidden, hidden, 1)
    norm("out_norm", hidden)
    conv("out_conv", hidden, 2 * c, 1)
    return w


def _port_resnet_reference(x: torch.Tensor, w: dict, blocks: int, double: bool) -> torch.Tensor:
    """The port's ResNet.forward in evaluation mode, in plain torch ops."""
    def bn(h, name):
        mean, var = w[f"{name}.running_mean"], w[f"{name}.running_var"]
        scale = w[f"{name}.weight"] / torch.sqrt(var + 1e-5)
        return (h - mean.view(1, -1, 1, 1)) * scale.view(1, -1, 1, 1) + w[f"{name}.bias"].view(1, -1, 1, 1)

    def conv(h, name):
        v, g = w[f"{name}.conv.weight_v"], w[f"{name}.conv.weight_g"]
        weight = g * v / v.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        return F.conv2d(h, weight, w.get(f"{name}.conv.bias"), padding=v.shape[-1] // 2)

    h = bn(x, "in_norm")
    if double:
        h = h * 2.0
    h = conv(torch.relu(torch.cat([h, -h], dim=1)), "in_conv")
    skip = conv(h, "in_skip")
    for i in range(blocks):
        inner = conv(torch.relu(bn(h, f"blocks.{i}.in_norm")), f"blocks.{i}.in_conv")
        h = h + conv(torch.relu(bn(inner, f"blocks.{i}.out_norm")), f"blocks.{i}.out_conv")
        skip = skip + conv(h, f"skips.{i}")
    return conv(torch.relu(bn(skip, "out_norm")), "out_conv")


def _load_port(net, w: dict, blocks: int) -> None:
    """The port's names onto flowspec's ``realnvp`` conditioner."""
    def norm(module, name):
        for key in ("weight", "bias", "running_mean", "running_var"):
            getattr(module, key).copy_(w[f"{name}.{key}"])

    def conv(module, name):
        module.v.copy_(w[f"{name}.conv.weight_v"])
        module.g.copy_(w[f"{name}.conv.weight_g"].flatten())
        if f"{name}.conv.bias" in w:
            module.bias.copy_(w[f"{name}.conv.bias"])

    with torch.no_grad():
        norm(net.in_norm, "in_norm")
        conv(net.in_conv, "in_conv")
        conv(net.in_skip, "in_skip")
        for i, block in enumerate(net.blocks):
            norm(block.in_norm, f"blocks.{i}.in_norm")
            conv(block.in_conv, f"blocks.{i}.in_conv")
            norm(block.out_norm, f"blocks.{i}.out_norm")
            conv(block.out_conv, f"blocks.{i}.out_conv")
            conv(net.skips[i], f"skips.{i}")
        norm(net.out_norm, "out_norm")
        conv(net.out_conv, "out_conv")


@pytest.mark.parametrize("parity", [0, 1])
def test_realnvp_conditioner_body_gives_the_official_log_likelihood(parity):
    """A whole RealNVP checkerboard coupling: the port's resnet body with its weights, the official
    shift / log-rescaling split, the learned tanh scale and ``(x + t) exp(s)``; same log-likelihood."""
    from flowspec.layers.conditioners.realnvp import RealNVPConditioner

    generator = torch.Generator().manual_seed(3 + parity)
    blocks, hidden = 2, WIDTH
    weights = _port_weights(generator, C, hidden, blocks)
    scale = 0.8
    x = torch.randn(B, C, H, W, generator=generator)

    # the port's checkerboard_mask(reverse=parity): ((i % 2) + j) % 2, reversed -> 1 - mask; 1 conditions
    rows, cols = torch.arange(H).view(-1, 1), torch.arange(W).view(1, -1)
    b = (((rows % 2) + cols) % 2).to(x.dtype)
    b = 1 - b if parity else b
    st = _port_resnet_reference(x * b, weights, blocks, double=True)
    shift, log_rescaling = st[:, :C], st[:, C:]
    log_s = scale * torch.tanh(log_rescaling) * (1 - b)
    z_ref = (x + shift * (1 - b)) * torch.exp(log_s)
    ll_ref = _normal_log_prob(z_ref) + log_s.flatten(1).sum(1)

    conditioner = RealNVPConditioner(hidden=hidden, blocks=blocks, zero_init=False)
    coupling = CouplingConfig(mask="checkerboard", parity=parity, scale="tanh", order="shift_scale",
                              conditioner=conditioner).build((C, H, W)).double().eval()
    _load_port(coupling.net, weights, blocks)
    with torch.no_grad():
        coupling.transform.tanh_scale.fill_(scale)
    z, logdet = coupling(x)

    torch.testing.assert_close(z, z_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(_normal_log_prob(z) + logdet, ll_ref, rtol=1e-10, atol=1e-10)
    # teeth: without the doubling the same weights give another likelihood
    undoubled = _port_resnet_reference(x * b, weights, blocks, double=False)
    assert (undoubled - st).abs().max() > 1e-3
