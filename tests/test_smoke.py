import torch

import flowspec


def test_tiny_glow_round_trip_and_logdet(tiny_glow_yaml):
    model = flowspec.compile(flowspec.loads_spec(tiny_glow_yaml)).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    zs, logdet = model.eval()(x)
    back, inverse_logdet = model.inverse(zs)
    torch.testing.assert_close(back, x)
    torch.testing.assert_close(inverse_logdet, -logdet)
