"""Registries stay open: a kind registered after ``import flowspec``, or by a third-party package
through the ``flowspec.kinds`` entry point, is accepted by specs, the schema and the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
import torch

import flowspec
from flowspec.errors import SpecError
from flowspec.layers.transforms import TRANSFORM_KINDS, TransformCost, register_transform
from flowspec.layers.transforms.additive import AdditiveTransform
from flowspec.report import report_spec
from flowspec.spec.schema import spec_json_schema
from plugin_install import SOURCE, example_plugin_installed, write_dist_info

ROOT = Path(__file__).resolve().parent.parent

MOONS = """\
input: {shape: [2], data: continuous}
layers:
  - {kind: coupling, mask: channel, transform: TRANSFORM, conditioner: {kind: mlp, hidden: [8]}}
  - {kind: coupling, mask: channel, parity: 1, transform: TRANSFORM, conditioner: {kind: mlp, hidden: [8]}}
"""


class ShiftTransform(AdditiveTransform):
    """``y = x + t`` under another name: a kind defined after ``import flowspec``."""

    kind: Literal["shift"] = "shift"

    def cost(self) -> TransformCost:
        return TransformCost(flops_forward=1.0, flops_inverse=1.0, flops_logdet=0.0, ops=1)


@pytest.fixture
def shift_registered():
    register_transform(ShiftTransform)
    yield
    del TRANSFORM_KINDS["shift"]


def test_a_kind_registered_after_import_is_accepted(shift_registered):
    spec = flowspec.loads_spec(MOONS.replace("TRANSFORM", "shift"))
    assert spec.layers[0].transform == ShiftTransform()
    model = flowspec.compile(spec)
    x = torch.randn(5, 2)
    assert torch.isfinite(model.log_prob(x)).all()
    schema = json.dumps(spec_json_schema())
    assert '"shift"' in schema and "ShiftTransform" in schema


def test_an_unregistered_kind_is_refused_again_and_named_among_the_known():
    register_transform(ShiftTransform)
    del TRANSFORM_KINDS["shift"]
    with pytest.raises(SpecError, match=r"unknown kind 'shift'.*known: .*affine") as error:
        flowspec.loads_spec(MOONS.replace("TRANSFORM", "shift"))
    for known in re.findall(r"known: ([^)]*)", str(error.value)):
        assert "shift" not in known.split(", ")
    assert "ShiftTransform" not in json.dumps(spec_json_schema())


def test_the_example_plugin_registers_through_its_entry_point():
    assert "softplus" not in TRANSFORM_KINDS
    with example_plugin_installed() as plugin:
        assert TRANSFORM_KINDS["softplus"] is plugin.SoftplusTransform
        spec = flowspec.loads_spec(MOONS.replace("TRANSFORM", "{kind: softplus, min_scale: 0.01}"))
        model = flowspec.compile(spec).double()
        x = torch.randn(7, 2, dtype=torch.float64)
        assert torch.isfinite(model.log_prob(x)).all()
        assert report_spec(spec, "a100", 4).params == sum(p.numel() for p in model.parameters())
        with pytest.raises(SpecError, match=r"min_scale"):
            flowspec.loads_spec(MOONS.replace("TRANSFORM", "{kind: softplus, min_scale: 2}"))
    assert "softplus" not in TRANSFORM_KINDS


def test_the_cli_sees_an_installed_plugin_and_import_does_not_load_it(tmp_path):
    """A fresh process with the package on its path: ``import flowspec`` leaves the entry point
    alone; the first validation loads it; ``flowspec schema`` and ``validate`` know the kind."""
    write_dist_info(tmp_path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(SOURCE), str(ROOT)]))
    spec = tmp_path / "moons-softplus.yaml"
    spec.write_text(MOONS.replace("TRANSFORM", "softplus"))
    script = ("import sys, flowspec\n"
              "assert 'flowspec_softplus' not in sys.modules, 'import flowspec loaded the plugin'\n"
              f"flowspec.load_spec({str(spec)!r})\n"
              "assert 'flowspec_softplus' in sys.modules\n"
              "from flowspec.cli import main\n"
              "sys.argv = ['flowspec', 'schema']\n"
              "main()\n")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    assert "SoftplusTransform" in schema["$defs"]
    validate = subprocess.run([sys.executable, "-m", "flowspec", "validate", str(spec)], env=env,
                              capture_output=True, text=True, timeout=120)
    assert validate.returncode == 0, validate.stderr + validate.stdout
