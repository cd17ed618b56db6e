"""The latent verbs through typer's CliRunner on a tiny digits-shaped flow: encode / decode /
reconstruct are exact, interpolate and manipulate write PNGs of the stated grid size, and bad
input is one line on stderr with exit code 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import flowspec
from flowspec.cli import app
from flowspec.compile.latents import Latents
from flowspec.data import load_data

runner = CliRunner()

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

OTHER = TINY.replace("name: tiny-digits", "name: other").replace("steps: 1", "steps: 2")

CELL = 32 + 1  # an 8x8 image upscaled 4x, and a 1 px gap


def grid_size(rows: int, cols: int) -> tuple[int, int]:
    """(width, height) of a rows x cols grid of 8x8 images."""
    return cols * CELL + 1, rows * CELL + 1


def saved(text: str, path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = flowspec.compile(flowspec.loads_spec(text))
    with torch.no_grad():
        model.initialize(load_data("digits", None, (1, 8, 8), 17).train[:64])
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    flowspec.save_model(model.eval(), path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return saved(TINY, tmp_path_factory.mktemp("run") / "model.pt")


def ok(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def fails(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_encode_decode_is_exact_on_digits_indices(checkpoint, tmp_path):
    z = tmp_path / "z.npz"
    out = ok("encode", checkpoint, "--data", "digits", "--index", 3, 17, 42, "-o", z).stdout
    assert "wrote 3 examples' latents [(2, 4, 4), (8, 2, 2)]" in out and "bits/dim" in out
    latents = Latents.load(z)
    assert len(latents) == 3 and latents.spec_name == "tiny-digits"
    ok("decode", checkpoint, z, "-o", tmp_path / "out.png", "--continuous")
    test = load_data("digits", None, (1, 8, 8), 17).test
    assert np.array_equal(np.load(tmp_path / "out.npy"), test[[3, 17, 42]].numpy().astype(np.int64))
    continuous = np.load(tmp_path / "out.continuous.npy")
    assert np.abs(continuous - (test[[3, 17, 42]].numpy() + 0.5)).max() < 1e-3
    assert Image.open(tmp_path / "out.png").size == grid_size(2, 2)  # 3 images, ceil(sqrt 3) columns
    same = tmp_path / "same.npz"
    ok("encode", checkpoint, "--index", "3,17,42", "-o", same)  # the run's data set, comma form
    assert all(torch.equal(a, b) for a, b in zip(Latents.load(same).zs, latents.zs))


def test_decode_encode_decode_is_exact_through_npy_files(checkpoint, tmp_path):
    """What `decode -o x.npy` writes, `encode` reads: (N, *shape) levels, for any N (4 is not a
    square grid's count either way round) and after a second trip, identical."""
    ok("encode", checkpoint, "--index", "3,17,42,5", "-o", tmp_path / "z.npz")
    ok("decode", checkpoint, tmp_path / "z.npz", "-o", tmp_path / "first.npy")
    first = np.load(tmp_path / "first.npy")
    test = load_data("digits", None, (1, 8, 8), 17).test.numpy().astype(np.int64)
    assert first.shape == (4, 1, 8, 8) and np.array_equal(first, test[[3, 17, 42, 5]])
    ok("encode", checkpoint, tmp_path / "first.npy", "-o", tmp_path / "again.npz")
    ok("decode", checkpoint, tmp_path / "again.npz", "-o", tmp_path / "second.npy")
    assert np.array_equal(np.load(tmp_path / "second.npy"), first)
    for a, b in zip(Latents.load(tmp_path / "z.npz").zs, Latents.load(tmp_path / "again.npz").zs):
        assert torch.equal(a, b)
    ok("reconstruct", checkpoint, tmp_path / "first.npy", "-o", tmp_path / "pairs.npy")
    pairs = np.load(tmp_path / "pairs.npy")
    assert pairs.shape == (8, 1, 8, 8) and np.array_equal(pairs[0::2], first) and np.array_equal(pairs[1::2], first)


def test_encode_reads_image_files_and_arrays(checkpoint, tmp_path):
    test = load_data("digits", None, (1, 8, 8), 17).test[:2]
    pixels = (test[0, 0].numpy() * 255 / 16).round().astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "digit.png")
    np.save(tmp_path / "digits.npy", test.numpy()[:, 0].astype(np.int64))  # (N, H, W) layout
    ok("encode", checkpoint, tmp_path / "digit.png", tmp_path / "digits.npy", "-o", tmp_path / "z.npz")
    ok("decode", checkpoint, tmp_path / "z.npz", "-o", tmp_path / "back.npy")
    back = np.load(tmp_path / "back.npy")
    assert np.array_equal(back[:, 0], np.stack([test[0, 0].numpy(), *test[:, 0].numpy()]).astype(np.int64))


def test_reconstruct_prints_zero_error_and_writes_pairs(checkpoint, tmp_path):
    out = ok("reconstruct", checkpoint, "--index", "0,1,2,3", "-o", tmp_path / "rec.png").stdout
    assert "max |decode(encode(x)) - x| = 0 levels over 4 examples" in out
    assert Image.open(tmp_path / "rec.png").size == grid_size(4, 2)


def test_interpolate_writes_a_row_per_pair_and_its_ends_are_a_and_b(checkpoint, tmp_path):
    ok("interpolate", checkpoint, 0, 1, "--steps", 6, "-o", tmp_path / "grid.png")
    assert Image.open(tmp_path / "grid.png").size == grid_size(1, 6)
    ok("interpolate", checkpoint, 0, 1, "--steps", 6, "--method", "spherical", "-o", tmp_path / "path.npy")
    path = np.load(tmp_path / "path.npy")
    test = load_data("digits", None, (1, 8, 8), 17).test.numpy().astype(np.int64)
    assert path.shape == (6, 1, 8, 8)  # (N, *shape): arrays are examples, grids are for pictures
    assert np.array_equal(path[0], test[0]) and np.array_equal(path[-1], test[1])
    out = ok("interpolate", checkpoint, 0, 1, "--steps", 4, "--top-only", "--temperature", 0.5,
             "-o", tmp_path / "top.png").stdout
    assert "factored redrawn at T=0.5" in out
    assert Image.open(tmp_path / "top.png").size == grid_size(1, 4)
    ok("encode", checkpoint, "--index", "5,6", "-o", tmp_path / "a.npz")
    ok("encode", checkpoint, "--index", "7,8", "-o", tmp_path / "b.npz")
    ok("interpolate", checkpoint, tmp_path / "a.npz", tmp_path / "b.npz", "--steps", 3, "-o", tmp_path / "two.png")
    assert Image.open(tmp_path / "two.png").size == grid_size(2, 3)


def test_manipulate_toward_8_away_from_3_and_reuse_the_direction(checkpoint, tmp_path):
    out = ok("manipulate", checkpoint, "--index", "0,1", "--toward", 8, "--away", 3,
             "--save-direction", tmp_path / "d.npz", "-o", tmp_path / "sweep.png").stdout
    assert "toward '8'" in out and "away from '3'" in out
    assert Image.open(tmp_path / "sweep.png").size == grid_size(2, 5)
    ok("manipulate", checkpoint, "--index", 0, "--direction", tmp_path / "d.npz", "--strengths=-2,0,2",
       "-o", tmp_path / "again.npy")
    again = np.load(tmp_path / "again.npy")
    test = load_data("digits", None, (1, 8, 8), 17).test.numpy().astype(np.int64)
    assert again.shape == (3, 1, 8, 8) and np.array_equal(again[1], test[0])  # strength 0
    assert not np.array_equal(again[0], again[2])
    ok("encode", checkpoint, "--index", "0,1", "-o", tmp_path / "z.npz")  # latents as INPUTS, then --index
    ok("manipulate", checkpoint, tmp_path / "z.npz", "--index", 2, "--direction", tmp_path / "d.npz",
       "--strengths", "0,1", "-o", tmp_path / "mixed.npy")
    mixed = np.load(tmp_path / "mixed.npy")
    assert mixed.shape == (6, 1, 8, 8) and np.array_equal(mixed[::2], test[:3])  # row by row


def test_bad_input_is_one_line_and_exit_2(checkpoint, tmp_path):
    Image.new("L", (10, 12)).save(tmp_path / "big.png")
    assert "10x12 pixels, the spec's input is 8x8" in fails("encode", checkpoint, tmp_path / "big.png")
    Image.new("RGB", (8, 8), (10, 200, 30)).save(tmp_path / "rgb.png")
    assert "3 channels (RGB), the spec's input has 1" in fails("encode", checkpoint, tmp_path / "rgb.png")
    assert "no such file" in fails("encode", checkpoint, tmp_path / "nope.png")
    assert "out of range" in fails("encode", checkpoint, "--index", 300)
    assert "unknown class" in fails("manipulate", checkpoint, "--index", 0, "--toward", 12, "--away", 3)
    assert "'x' is not a number" in fails("manipulate", checkpoint, "--index", 0, "--toward", 8, "--away", 3,
                                          "--strengths", "1,x")
    other = saved(OTHER, tmp_path / "other.pt")
    ok("encode", other, "--index", 0, "-o", tmp_path / "other.npz")
    line = fails("decode", checkpoint, tmp_path / "other.npz", "-o", tmp_path / "d.png")
    assert "latents of spec 'other'" in line and "this model's spec is 'tiny-digits'" in line
    ok("manipulate", other, "--index", 0, "--toward", 8, "--away", 3, "--save-direction", tmp_path / "od.npz",
       "-o", tmp_path / "o.png")
    assert "a direction of spec 'other'" in fails("manipulate", checkpoint, "--index", 0, "--direction", tmp_path / "od.npz")
    assert "not latents" in fails("decode", checkpoint, tmp_path / "od.npz")
    assert "--top-only" in fails("interpolate", checkpoint, 0, 1, "--temperature", 0.7)
    assert "a temperature is a finite number" in fails("interpolate", checkpoint, 0, 1, "--top-only",
                                                       "--temperature", "inf")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for verb in (["encode", checkpoint, "--index", 0], ["reconstruct", checkpoint, "--index", 0],
                 ["interpolate", checkpoint, 0, 1], ["decode", checkpoint, tmp_path / "other.npz"],
                 ["manipulate", checkpoint, "--index", 0, "--toward", 8, "--away", 3]):
        line = fails(*verb, "-o", blocker / "out.png")
        assert str(blocker) in line and "is a file, not a folder" in line, line


def test_a_vae_run_encodes_its_posterior_centre(tmp_path):
    vae = tmp_path / "vae.pt"
    flowspec.save_model(flowspec.compile(flowspec.load_spec(Path(__file__).resolve().parent.parent
                                                           / "specs/vae-iaf-digits.yaml")).eval(), vae)
    assert "[(16,)]" in ok("encode", vae, "--index", "0,1", "-o", tmp_path / "z.npz").stdout
    assert "max |decode(encode(x)) - x| = " in ok("reconstruct", vae, "--index", 0, "-o", tmp_path / "r.png").stdout
    ok("interpolate", vae, 0, 1, "--steps", 3, "-o", tmp_path / "i.png")
    assert Image.open(tmp_path / "i.png").size == grid_size(1, 3)
    assert "works on flow specs" in fails("decode", vae, tmp_path / "z.npz", "--continuous", "-o", tmp_path / "d.png")
    assert not (tmp_path / "d.png").exists()


VECTOR = """\
name: tiny-vectors
input: {shape: [64], levels: 17}
prior: logistic
layers:
  - {kind: coupling, transform: additive, parity: 0, conditioner: {kind: mlp, hidden: [8]}}
  - {kind: coupling, transform: additive, parity: 1, conditioner: {kind: mlp, hidden: [8]}}
  - scaling
"""


def test_a_vector_flow_reads_and_writes_square_images(tmp_path):
    torch.manual_seed(0)
    model = flowspec.compile(flowspec.loads_spec(VECTOR))
    flowspec.save_model(model.eval(), tmp_path / "vectors.pt")
    levels = np.arange(64).reshape(8, 8) % 17
    Image.fromarray((levels * 255 / 16).round().astype(np.uint8)).save(tmp_path / "square.png")
    ok("encode", tmp_path / "vectors.pt", tmp_path / "square.png", "-o", tmp_path / "z.npz")
    ok("decode", tmp_path / "vectors.pt", tmp_path / "z.npz", "-o", tmp_path / "back.png")
    assert np.array_equal(np.load(tmp_path / "back.npy"), levels.reshape(1, 64))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "back.png"))[1:33:4, 1:33:4],
                          np.asarray(Image.open(tmp_path / "square.png")))  # the 4x upscaled cell
    np.save(tmp_path / "nan.npy", np.full((2, 64), np.nan))
    assert "NaN or inf" in fails("encode", tmp_path / "vectors.pt", tmp_path / "nan.npy")
    np.save(tmp_path / "wrong.npy", np.zeros((2, 63)))
    assert "expected (N, 64)" in fails("encode", tmp_path / "vectors.pt", tmp_path / "wrong.npy")


def test_manipulate_takes_class_names_of_a_labelled_folder(checkpoint, tmp_path):
    generator = np.random.default_rng(0)
    for split, count in (("train", 6), ("test", 2)):
        for name, column in (("cat", 1), ("dog", 6)):
            folder = tmp_path / "shapes" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = generator.integers(0, 4, (8, 8))
                pixels[:, column] = 16  # each class: a bright column in its own place
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    data = ("--data", "folder", "--data-dir", tmp_path / "shapes")
    out = ok("manipulate", checkpoint, *data, "--index", 0, "--toward", "dog", "--away", "cat",
             "--strengths", "0,1", "-o", tmp_path / "m.npy").stdout
    assert "toward 'dog' (6) away from 'cat' (6)" in out
    assert "unknown class; folder" in fails("manipulate", checkpoint, *data, "--index", 0, "--toward", "cow",
                                             "--away", "cat")
