"""TarFlow: patch tokens, the tarflow block's decoders (KV cache, recomputing the prefix, Jacobi), label
dropout and classifier-free guidance, and the located errors of their fields. Tiny models throughout."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

import flowspec
from flowspec.errors import ConditionError, SpecError
from flowspec.layers.tarflow import TarFlowConfig

SPEC = """\
name: tiny-tarflow
input: {shape: [1, 4, 4], levels: 5}
prior: standard
CONDITION
layers:
  - {kind: patchify, patch: 2}
  - {kind: tarflow, width: 8, layers: 1, heads: 2, order: natural}
  - {kind: tarflow, width: 8, layers: 1, heads: 2, order: reversed}
"""
CLASSES = "condition: {kind: class, classes: 3, embed: 4, drop: 0.2, prior: plain}"


def _model(condition: str = "", seed: int = 0, text: str = SPEC):
    torch.manual_seed(seed)
    model = flowspec.compile(flowspec.loads_spec(text.replace("CONDITION", condition), "tiny.yaml"))
    with torch.no_grad():  # off the zero-initialised output, so every block does something
        for parameter in model.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
    return model.eval()


def _blocks(model):
    return [layer for layer in model.layers if hasattr(layer, "decode_with")]


@pytest.mark.parametrize("shape", [(16, 3), (9,)], ids=["sequence", "vector"])
def test_kv_cached_decoding_gives_the_sequential_inverse_in_float32(shape):
    torch.manual_seed(0)
    layer = TarFlowConfig(width=16, heads=4, layers=2).build(shape, (3,))
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    x, c = torch.randn(5, *shape), torch.randn(5, 3)
    y, logdet = layer(x, c)
    sequential, sequential_logdet = layer.decode_with("recompute", y, c)
    cached, cached_logdet = layer.decode_with("cached", y, c)
    assert (cached - sequential).abs().max() <= 1e-5
    assert (cached - x).abs().max() <= 1e-5
    torch.testing.assert_close(cached_logdet, -logdet, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sequential_logdet, -logdet, rtol=1e-5, atol=1e-5)


def test_jacobi_converges_to_the_sequential_inverse_and_reports_its_passes():
    torch.manual_seed(1)
    config = TarFlowConfig(width=16, heads=2, layers=2, sampling="jacobi", tolerance=0.0)
    layer = config.build((12, 2)).double()
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    x = torch.randn(4, 12, 2, dtype=torch.float64)
    y, _ = layer(x)
    sequential, _ = layer.decode_with("recompute", y)
    jacobi, _ = layer.decode_with("jacobi", y)
    torch.testing.assert_close(jacobi, sequential, rtol=1e-10, atol=1e-10)
    assert 1 <= layer.last_iterations <= 12
    blocked = config.model_copy(update={"block": 5}).build((12, 2)).double()
    blocked.load_state_dict(layer.state_dict())
    torch.testing.assert_close(blocked.decode_with("jacobi", y)[0], sequential, rtol=1e-10, atol=1e-10)
    capped = config.model_copy(update={"iterations": 2}).build((12, 2)).double()
    capped.load_state_dict(layer.state_dict())
    early, _ = capped.decode_with("jacobi", y)
    assert capped.last_iterations == 2  # the cap is kept, and two passes fix only two tokens
    assert (early - sequential).abs().max() > 1e-6


def test_a_tolerance_stops_jacobi_before_its_cap_near_the_sequential_inverse():
    torch.manual_seed(2)
    layer = TarFlowConfig(width=8, sampling="jacobi", tolerance=1e-4).build((10, 2)).double()
    with torch.no_grad():  # weakly coupled tokens: the fixed point is reached in a few passes
        for parameter in layer.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    y = torch.randn(3, 10, 2, dtype=torch.float64)
    x, _ = layer.inverse(y)
    assert 1 < layer.last_iterations < 10
    assert (x - layer.decode_with("recompute", y)[0]).abs().max() < 1e-3


def test_patchify_and_the_blocks_round_trip_a_whole_model_in_float64():
    model = _model().double()
    x = torch.rand(3, 1, 4, 4, dtype=torch.float64) - 0.5
    zs, logdet = model(x)
    assert zs[-1].shape == (3, 4, 4)  # 4 tokens of 2x2 pixels
    back, inverse_logdet = model.inverse(zs)
    torch.testing.assert_close(back, x, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(inverse_logdet, -logdet, rtol=1e-10, atol=1e-10)


def test_label_dropout_uses_the_null_class_in_training_only():
    model = _model(CLASSES)
    embedding = model.condition
    c = torch.zeros(4000, dtype=torch.long)
    null = embedding.null_features(1)[0]
    embedding.train()
    dropped = (embedding(c) == null).all(1).float().mean()
    assert 0.15 < dropped < 0.25
    embedding.eval()
    assert not (embedding(c) == null).all(1).any()
    assert model.condition.net.num_embeddings == 4  # 3 classes and the null class


def test_guidance_mixes_conditional_and_null_parameters_in_every_decoder():
    model = _model(CLASSES).double()
    block = _blocks(model)[0]
    y = torch.randn(3, 4, 4, dtype=torch.float64)
    h = model.condition(torch.tensor([0, 1, 2]))
    null = model.condition.null_features(3)
    w = 1.5
    decoded = {s: block.decode_with(s, y, h, null, w)[0] for s in ("cached", "recompute", "jacobi")}
    torch.testing.assert_close(decoded["cached"], decoded["recompute"], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(decoded["jacobi"], decoded["recompute"], rtol=1e-10, atol=1e-10)
    # the guided parameters are theta_c + w (theta_c - theta_0) at the decoded x
    x = decoded["cached"]
    conditional, unconditional = block.conditioner(x, h), block.conditioner(x, null)
    mixed = conditional + w * (conditional - unconditional)
    torch.testing.assert_close(block.transform(x, mixed)[0], y, rtol=1e-10, atol=1e-10)
    # weight 0 is conditional sampling as it is
    torch.testing.assert_close(block.decode_with("cached", y, h, null, 0.0)[0], block.decode_with("cached", y, h)[0])


def test_model_sample_with_guidance():
    model = _model(CLASSES)
    plain = model.sample(6, condition=1, generator=torch.Generator().manual_seed(0))
    zero = model.sample(6, condition=1, generator=torch.Generator().manual_seed(0), guidance=0.0)
    guided = model.sample(6, condition=1, generator=torch.Generator().manual_seed(0), guidance=2.0)
    torch.testing.assert_close(zero, plain)
    assert (guided - plain).abs().max() > 1e-4


def test_guidance_without_a_condition_or_without_drop_is_one_clear_error():
    with pytest.raises(ConditionError, match="guidance 2 needs a conditional model"):
        _model().sample(2, guidance=2.0)
    no_drop = _model("condition: {kind: class, classes: 3, embed: 4, prior: plain}")
    with pytest.raises(ConditionError, match=r"guidance 1: condition.drop is 0"):
        no_drop.sample(2, condition=0, guidance=1.0)
    with pytest.raises(ConditionError, match="not a finite number"):
        _model(CLASSES).sample(2, condition=0, guidance=float("nan"))


@pytest.mark.parametrize("drop", ["1.0", "-0.1"])
def test_condition_drop_is_validated_with_its_line(tmp_path, drop):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.replace("CONDITION", CLASSES.replace("0.2", drop)))
    with pytest.raises(SpecError) as caught:
        flowspec.load_spec(path)
    problem = caught.value.problems[0]
    assert problem.path == ("condition", "drop") and problem.line == 4


@pytest.mark.parametrize("row, field, pattern", [
    ("{kind: tarflow, width: 10, heads: 4}", "heads", r"heads 4 does not divide width 10"),
    ("{kind: patchify, patch: 3}", "patch", r"patch 3 does not divide the 4x4 image"),
    ("{kind: tarflow, width: 8, sampling: jacobi, block: 9}", "block", r"jacobi block 9 is longer than the sequence"),
], ids=["heads", "patch", "block"])
def test_bad_fields_are_located(tmp_path, row, field, pattern):
    text = SPEC.replace("CONDITION", "").replace("  - {kind: tarflow, width: 8, layers: 1, heads: 2, order: natural}",
                                                 f"  - {row}" if field != "patch" else "  - {kind: scaling}")
    if field == "patch":
        text = text.replace("{kind: patchify, patch: 2}", row)
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=pattern) as caught:
        flowspec.build_graph(flowspec.load_spec(path))
    problem = caught.value.problems[0]
    assert problem.path[-1] == field and problem.line == (6 if field == "patch" else 7)  # the row's line


def test_dropout_makes_training_passes_random_and_eval_passes_exact(tmp_path):
    model = _model(text=SPEC.replace("order: natural}", "order: natural, dropout: 0.5}"))
    x = torch.rand(6, 1, 4, 4) - 0.5
    evaluated = model.log_prob(x)
    torch.testing.assert_close(model.log_prob(x), evaluated, rtol=0, atol=0)
    z, _ = model.layers[1](model.layers[0](x)[0])  # eval: the decoders invert the block exactly
    torch.testing.assert_close(model.layers[1].decode_with("cached", z)[0], model.layers[0](x)[0], rtol=1e-5, atol=1e-5)
    model.train()
    assert not torch.equal(model.log_prob(x), model.log_prob(x))
    model.eval()
    torch.testing.assert_close(model.log_prob(x), evaluated, rtol=0, atol=0)
    path = tmp_path / "spec.yaml"  # invertible backprop re-runs the block: its dropout is refused there
    path.write_text(SPEC.replace("CONDITION", "memory: {invertible_backprop: true}")
                    .replace("order: natural}", "order: natural, dropout: 0.5}"))
    with pytest.raises(SpecError, match="dropout makes its training pass random") as caught:
        flowspec.build_graph(flowspec.load_spec(path))
    assert caught.value.problems[0].line == 7


def test_a_one_token_sequence_and_an_image_are_refused_with_a_hint(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.replace("CONDITION", "").replace("patch: 2", "patch: 4"))
    with pytest.raises(SpecError, match="1 token has nothing to be autoregressive over"):
        flowspec.build_graph(flowspec.load_spec(path))
    path.write_text(SPEC.replace("CONDITION", "").replace("  - {kind: patchify, patch: 2}\n", ""))
    with pytest.raises(SpecError, match=r"needs a token sequence \(N, D\) or a vector") as caught:
        flowspec.build_graph(flowspec.load_spec(path))
    assert "patchify" in caught.value.problems[0].hint


def test_permute_reverses_the_tokens_of_a_sequence():
    from flowspec.layers.permute import PermuteConfig

    layer = PermuteConfig(order="reverse").build((5, 3))
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(layer(x)[0], x.flip(1))


def test_report_gives_attention_kv_cache_and_decoding_costs():
    from flowspec.report import report_spec

    spec = flowspec.loads_spec(SPEC.replace("CONDITION", ""), "tiny.yaml")
    notes = "\n".join(report_spec(spec, "a100", 8).notes)
    # width 8, 1 layer, 4 tokens: QK^T and AV 2 x 2 N^2 C = 512; KV cache 2 L N C float32 = 256 B
    assert "attention (QK^T, AV) 512 of" in notes and "KV cache 256 B per example" in notes
    assert "recompute" in notes and "(4 passes)" in notes and "jacobi at most" in notes


def test_cli_sample_with_guidance_and_its_error(tmp_path):
    from flowspec.cli import app
    from flowspec.data import load_data
    from flowspec.train.config import TrainingConfig
    from flowspec.train.runner import train

    data = load_data("digits", None, (1, 8, 8), 17, classes=10).take(64, 16)
    text = """\
name: tiny-cond
input: {shape: [1, 8, 8], levels: 17}
prior: standard
condition: {kind: class, classes: 10, embed: 8, drop: DROP, prior: plain}
layers:
  - {kind: patchify, patch: 4}
  - {kind: tarflow, width: 8, layers: 1, heads: 2}
"""
    config = TrainingConfig(steps=2, batch_size=16, warmup=1, eval_every=1000, checkpoint_every=1000,
                            sample_every=1000, samples=4, device="cpu")
    runner = CliRunner()
    for drop in ("0.1", "0.0"):
        out = tmp_path / drop
        train(flowspec.loads_spec(text.replace("DROP", drop), "t.yaml"), data, config, out, progress=False)
        result = runner.invoke(app, ["sample", str(out / "last.pt"), "-n", "4", "--class", "3", "--guidance", "1.5",
                                     "-o", str(tmp_path / f"{drop}.npy")])
        if drop == "0.1":
            assert result.exit_code == 0, result.output
            assert (tmp_path / f"{drop}.npy").exists()
        else:
            assert result.exit_code == 2
            assert result.output.strip().splitlines() == [
                "error: guidance 1.5: condition.drop is 0: guidance needs a model trained with label dropout to a "
                "null class (condition: {kind: class, drop: 0.1, ...})"]


def test_check_measures_each_autoregressive_layers_triangle(monkeypatch):
    from flowspec.compile.check import check_spec

    spec = flowspec.loads_spec(SPEC.replace("CONDITION", ""), "tiny.yaml")
    result = check_spec(spec)
    assert result.ok and result.triangular_error == 0.0
    # a kind claiming the other order's triangle is caught: its real Jacobian has entries outside it
    claimed = TarFlowConfig.jacobian_pattern
    monkeypatch.setattr(TarFlowConfig, "jacobian_pattern", lambda self, shape: claimed(
        self.model_copy(update={"order": "reversed" if self.order == "natural" else "natural"}), shape))
    broken = check_spec(spec)
    assert broken.triangular_error > 1e-3 and not broken.ok
