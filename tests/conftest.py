import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def tiny_glow_yaml() -> str:
    return """\
input: {shape: [1, 8, 8], levels: 17}
levels: 2
steps: 2
step:
  - actnorm
  - {kind: invconv, lu: true}
  - {kind: coupling, conditioner: {kind: conv, hidden: 8}}
"""
