"""The library API behind the latent verbs and ``sample`` (flowspec.train.inputs, write_samples):
inputs resolve to the right examples, classes by name or label, "manipulate toward class 3"
works from Python, and a conditional sample's conditions are written beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import flowspec
from flowspec.core.latents import Latents, attribute_direction, manipulate
from flowspec.data import load_data
from flowspec.errors import DataError, FlowSpecError
from flowspec.train.evaluate import write_samples
from flowspec.train.inputs import TrainedRun, is_index, is_latents_file

TINY = """\
name: tiny-digits
input: {shape: [1, 8, 8], levels: 17}
levels: 2
steps: 1
step:
  - actnorm
  - {kind: invconv, lu: true}
  - {kind: coupling, conditioner: {kind: conv, hidden: 8}}
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = flowspec.compile(flowspec.loads_spec(TINY))
    with torch.no_grad():
        model.initialize(load_data("digits", None, (1, 8, 8), 17).train[:64])
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    path = tmp_path_factory.mktemp("run") / "model.pt"
    flowspec.save_model(model.eval(), path)
    return path


@pytest.fixture(scope="module")
def run(checkpoint) -> TrainedRun:
    return TrainedRun(checkpoint, data="digits")


def test_inputs_resolve_files_then_indices_in_order(run, checkpoint, tmp_path):
    digits = run.dataset()
    np.save(tmp_path / "two.npy", digits.test[5:7].numpy())
    x = run.examples_of([tmp_path / "two.npy", 3, "4"], indices=[9])
    assert torch.equal(x, torch.cat([digits.test[5:7], digits.test[[9, 3, 4]]]))
    assert torch.equal(TrainedRun(checkpoint, data="digits", split="train").examples_of([0]),
                       digits.train[:1])
    with pytest.raises(DataError, match="index 5000 out of range: the test split of digits"):
        run.examples_of([5000])
    with pytest.raises(DataError, match="no inputs"):
        run.examples_of([])
    with pytest.raises(FlowSpecError, match="split 'valid': train or test"):
        TrainedRun(checkpoint, split="valid")


def test_is_index_and_latents_files(run, tmp_path):
    assert is_index(3) and is_index("-2") and not is_index("a.png")
    (tmp_path / "7").write_text("a file named 7")
    assert not is_index(str(tmp_path / "7"))
    run.encode(run.examples_of([0])).save(tmp_path / "z.npz")
    np.savez(tmp_path / "plain.npz", x=np.zeros(3))
    assert is_latents_file(tmp_path / "z.npz") and not is_latents_file(tmp_path / "plain.npz")
    latents = run.inputs_as_latents([tmp_path / "z.npz", 1], indices=[2])
    assert len(latents) == 3
    assert torch.equal(run.decode(latents), run.examples_of([0, 1, 2]))  # the flow decodes exactly


def test_a_class_resolves_by_label_and_its_latents_are_that_class_mean(run):
    assert run.class_label(3) == run.class_label("3") == 3
    with pytest.raises(FlowSpecError, match="toward '12': unknown class; digits has classes 0, 1"):
        run.class_label("12", "toward")
    digits = run.dataset()
    group = run.group("3")
    assert len(group) == int((digits.labels_train == 3).sum())
    assert torch.allclose(group.top, run.encode(digits.train[digits.labels_train == 3]).top)


def test_manipulate_toward_class_3_from_python(run):
    strengths = [0.0, 1.0]
    moved = run.manipulate([0, 1], toward=3, away=5, strengths=strengths)
    assert moved.shape == (4, 1, 8, 8)
    inputs = run.examples_of([0, 1])
    assert torch.equal(moved[0::2], inputs)  # strength 0 is the input itself
    direction = attribute_direction(run.group(3), run.group(5))
    expected = run.decode(manipulate(run.inputs_as_latents([0, 1]), direction, strengths))
    assert torch.equal(moved, expected)
    assert torch.equal(run.manipulate([0, 1], direction=direction, strengths=strengths), expected)
    with pytest.raises(FlowSpecError, match="give toward and away"):
        run.manipulate([0], toward=3)


def test_a_group_can_be_a_folder_of_examples(run, tmp_path):
    digits = run.dataset()
    folder = tmp_path / "threes"
    folder.mkdir()
    for i, image in enumerate(digits.train[digits.labels_train == 3][:4]):
        Image.fromarray((image[0].numpy() * 255 / 16).round().astype(np.uint8)).save(folder / f"{i}.png")
    group = run.group(folder, "toward")
    assert isinstance(group, Latents) and len(group) == 4
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="toward .*empty: no images or arrays in this folder"):
        run.group(tmp_path / "empty", "toward")


def test_write_samples_of_a_class_writes_its_conditions(tmp_path):
    spec = TINY.replace("levels: 17}\n", "levels: 17}\ncondition: {kind: class, classes: 10, embed: 4}\n")
    torch.manual_seed(0)
    model = flowspec.compile(flowspec.loads_spec(spec))
    model.initialize(torch.randint(0, 17, (8, 1, 8, 8)).float(), condition=torch.arange(8))
    flowspec.save_model(model.eval(), tmp_path / "c.pt")
    out = write_samples(model, tmp_path / "c.pt", n=4, output=tmp_path / "s.npy", condition=3)
    assert np.load(out).shape == (4, 1, 8, 8)
    assert np.array_equal(np.load(tmp_path / "s.conditions.npy"), np.full(4, 3))
    write_samples(model, tmp_path / "c.pt", n=4, output=tmp_path / "d.npy")  # nothing asked: the classes in turn
    assert np.array_equal(np.load(tmp_path / "d.conditions.npy"), np.arange(4))
    write_samples(model, tmp_path / "c.pt", n=4, output=tmp_path / "e.npy", condition=torch.tensor([9, 8, 7, 6]))
    assert np.array_equal(np.load(tmp_path / "e.conditions.npy"), [9, 8, 7, 6])
