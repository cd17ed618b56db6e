"""``train``, ``eval``, ``sample``: the training runner's verbs (work lives in flowspec.train)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from flowspec.cli.app import SetOption, TitleOption, app, console, errors, reports_errors
from flowspec.cli.bounds import (MAX_BATCH, MAX_EPOCHS, MAX_OUTPUT_EXAMPLES, MAX_SEED, MAX_TRAINING_STEPS,
                                  finite_temperature, load_validated, named_folder, refuse_oversized,
                                  writable_folder)
from flowspec.errors import FlowSpecError

MAX_IMPORTANCE_SAMPLES = 4096  # `eval -k`: each sample is one more pass over the test set

DataOption = Annotated[Optional[str], typer.Option("--data", help="digits | mnist | cifar10 | folder | npz | csv | wine | moons | diabetes | power | gas | hepmass | miniboone | bsds300 [spec's training.data, else digits]")]
DataDirOption = Annotated[Optional[Path], typer.Option("--data-dir", help="folder (or .npz/.npy file) of the data set")]


@app.command()
@reports_errors
def train(spec: Annotated[Path, typer.Argument(help="the spec's YAML file", show_default=False)],
          data: DataOption = None,
          data_dir: DataDirOption = None,
          steps: Annotated[Optional[int], typer.Option(min=1, max=MAX_TRAINING_STEPS, help="optimizer steps [spec's training.steps]")] = None,
          epochs: Annotated[Optional[int], typer.Option(min=1, max=MAX_EPOCHS, help="epochs instead of steps")] = None,
          batch_size: Annotated[Optional[int], typer.Option(min=1, max=MAX_BATCH, help="global batch size")] = None,
          lr: Annotated[Optional[float], typer.Option(min=0.0, help="peak learning rate")] = None,
          optimizer: Annotated[Optional[str], typer.Option(help="adam | adamax")] = None,
          warmup: Annotated[Optional[int], typer.Option(min=0, max=MAX_TRAINING_STEPS, help="lr warm-up steps")] = None,
          grad_clip: Annotated[Optional[float], typer.Option(min=0.0, help="gradient-norm clip")] = None,
          ema: Annotated[Optional[float], typer.Option(min=0.0, max=0.99999, help="EMA decay")] = None,
          seed: Annotated[Optional[int], typer.Option(min=0, max=MAX_SEED, help="random seed")] = None,
          device: Annotated[Optional[str], typer.Option(help="cpu | cuda | auto")] = None,
          bf16: Annotated[Optional[bool], typer.Option("--bf16/--no-bf16", help="bf16 autocast of the training forward pass, on the CPU too (default: on a GPU only)")] = None,
          compiled: Annotated[Optional[bool], typer.Option("--compile/--no-compile", help="torch.compile the loss, evaluation and sampling (training.compile)")] = None,
          eval_every: Annotated[Optional[int], typer.Option(min=1, max=MAX_TRAINING_STEPS, help="steps between test evaluations")] = None,
          checkpoint_every: Annotated[Optional[int], typer.Option(min=1, max=MAX_TRAINING_STEPS, help="steps between checkpoints")] = None,
          sample_every: Annotated[Optional[int], typer.Option(min=1, max=MAX_TRAINING_STEPS, help="steps between sample grids")] = None,
          temperature: Annotated[Optional[float], typer.Option(help="sampling temperature (finite, > 0)")] = None,
          out: Annotated[Optional[Path], typer.Option("--out", "-o", help="run folder [runs/<spec name>]")] = None,
          standardize: Annotated[Optional[bool], typer.Option("--standardize/--no-standardize", help="continuous data: scale each feature to zero mean, unit std (train statistics); figures are then in standardized units [spec's training.standardize]")] = None,
          features: Annotated[Optional[str], typer.Option("--features", help="csv: the feature columns, comma-separated [all but context and label]")] = None,
          context_columns: Annotated[Optional[str], typer.Option("--context-columns", help="csv: the context columns of a context-conditional spec, comma-separated")] = None,
          label_column: Annotated[Optional[str], typer.Option("--label-column", help="csv: the label column of a class-conditional spec")] = None,
          resume: Annotated[bool, typer.Option("--resume", help="continue from OUT/last.pt")] = False,
          progress: Annotated[bool, typer.Option("--progress/--no-progress", help="progress: a bar on a terminal, whole periodic lines (step, loss, bits/dim, rate, ETA) in a pipe or file")] = True,
          overrides: SetOption = None) -> None:
    """Train SPEC (single process, or every rank under torchrun); write OUT/last.pt, best.pt,
    metrics.jsonl and samples/. SIGINT / SIGTERM write OUT/last.pt, then exit 130 / 143."""
    from flowspec.core.speed import keep_freed_memory
    from flowspec.data import BUNDLED_KINDS
    from flowspec.train.conditions import load_spec_data
    from flowspec.train.config import TrainingConfig, override
    from flowspec.train.ddp import environment
    from flowspec.train.runner import train as run_training
    from flowspec.train.signals import TrainingInterrupted

    keep_freed_memory()  # activations reuse freed memory instead of page-faulting on fresh pages

    parsed, graph = load_validated(spec, overrides=overrides)
    if temperature is not None:
        finite_temperature(temperature)
    refuse_oversized(graph)
    config = override(parsed.training or TrainingConfig(), steps=steps, epochs=epochs, batch_size=batch_size, lr=lr,
                      optimizer=optimizer, warmup=warmup, grad_clip=grad_clip, ema=ema, seed=seed, device=device,
                      bf16=bf16, compile=compiled, eval_every=eval_every, checkpoint_every=checkpoint_every,
                      sample_every=sample_every, temperature=temperature, data=data, standardize=standardize)
    named_by = f"--data {data}" if data is not None else f"{spec}: training.data: {config.data_set}"
    data, standardize = config.data_set, config.standardize
    if data_dir is None and data not in BUNDLED_KINDS:
        from flowspec.data.uci import FILES

        needed = f" (the folder holding {'/'.join(FILES[data])})" if data in FILES else ""
        raise FlowSpecError(f"{named_by}: the user supplies this data set's files (nothing is downloaded); "
                            f"pass --data-dir{needed}")
    folder = writable_folder(out or named_folder(Path("runs"), parsed.name))
    columns = csv_columns(features, context_columns, label_column)
    dataset = load_spec_data(parsed, data, data_dir, standardize=standardize, **columns)
    main = environment().main
    if main:
        console.print(f"{parsed.name}: {data} ({len(dataset.train)} train / {len(dataset.test)} test), "
                      f"run folder {folder}", markup=False)
    try:
        result = run_training(parsed, dataset, config, folder, resume=resume, progress=progress,
                              data_info={"kind": data, "dir": str(data_dir) if data_dir else None,
                                         "standardize": standardize, "columns": columns},
                              log=lambda line: console.print(line, markup=False))
    except TrainingInterrupted as stopped:  # a checkpoint was written; exit as the signal would
        if main:
            errors.print(str(stopped), markup=False)
        raise typer.Exit(stopped.exit_code) from None
    if main:
        test = f"{result.test_bpd:.4f}" if result.test_bpd is not None else "n/a"
        console.print(f"step {result.steps}: test {result.unit} {test}; wrote {folder / 'last.pt'}", markup=False)


def csv_columns(features: str | None, context_columns: str | None, label_column: str | None) -> dict:
    """``load_data``'s column arguments from the comma-separated options (empty when none given)."""
    def names(text: str | None) -> list[str] | None:
        return None if text is None else [name.strip() for name in text.split(",") if name.strip()]

    columns = {"features": names(features), "context_columns": names(context_columns) or (),
               "label_column": label_column}
    return {key: value for key, value in columns.items() if value}


@app.command(name="eval")
@reports_errors
def evaluate(checkpoint: Annotated[Path, typer.Argument(help="RUN/last.pt or best.pt", show_default=False)],
             data: Annotated[Optional[str], typer.Option("--data", help="data set [the run's]")] = None,
             data_dir: DataDirOption = None,
             k: Annotated[int, typer.Option("-k", min=1, help=f"importance samples (the importance-weighted bound, flows and VAEs), at most {MAX_IMPORTANCE_SAMPLES}")] = 1,
             batch_size: Annotated[int, typer.Option(min=1, max=MAX_BATCH, help="test examples per pass")] = 256,
             seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="seed of the dequantization noise")] = 0) -> None:
    """Test bits/dim of a checkpoint (EMA weights), importance-weighted with -k where supported; for
    continuous data nats/dim and the test log-likelihood; conditional models on the test conditions."""
    from flowspec.core.speed import keep_freed_memory
    from flowspec.train.evaluate import evaluate_checkpoint

    keep_freed_memory()  # activations reuse freed memory instead of page-faulting on fresh pages

    if k > MAX_IMPORTANCE_SAMPLES:
        raise FlowSpecError(f"-k {k}: at most {MAX_IMPORTANCE_SAMPLES} importance samples (each one is a "
                            "pass over the test set)")
    report = evaluate_checkpoint(checkpoint, data=data, data_dir=data_dir, k=k, batch_size=batch_size, seed=seed)
    for line in report.lines():
        console.print(line, markup=False)


@app.command()
@reports_errors
def sample(checkpoint: Annotated[Path, typer.Argument(help="RUN/last.pt or best.pt", show_default=False)],
           n: Annotated[int, typer.Option("-n", min=1, max=MAX_OUTPUT_EXAMPLES, help="number of samples")] = 64,
           temperature: Annotated[float, typer.Option(help="prior std scale (finite, >= 0)")] = 0.7,
           output: Annotated[Path, typer.Option("--output", "-o", help=".png grid, .npy array or .csv table")] = Path("samples.png"),
           seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="seed of the noise")] = 0,
           label: Annotated[Optional[int], typer.Option("--class", min=0, help="class-conditional model: draw every sample from this class")] = None,
           per_class: Annotated[Optional[int], typer.Option("--per-class", min=1, max=MAX_OUTPUT_EXAMPLES, help=f"class-conditional model: this many samples of each class, one grid row per class (replaces -n; at most {MAX_OUTPUT_EXAMPLES} samples in all)")] = None,
           context: Annotated[Optional[str], typer.Option("--context", help="context-conditional model: one context vector for every sample, comma-separated ('0.5,-1')")] = None,
           compiled: Annotated[bool, typer.Option("--compile", help="torch.compile sampling (one graph; the same samples)")] = False,
           guidance: Annotated[float, typer.Option("--guidance", help="classifier-free guidance weight w: theta_c + w (theta_c - theta_0) (a conditional model trained with condition.drop > 0; 0: none)")] = 0.0,
           denoise: Annotated[bool, typer.Option("--denoise", help="a flow trained with training.noise: pass each sample through the one-step score denoiser x + sigma^2 grad log p(x)")] = False,
           title: TitleOption = None,
           labels: Annotated[bool, typer.Option("--labels", help="class-conditional model: name each row's class (a figure, needs flowspec[plot])")] = False) -> None:
    """Draw N samples at TEMPERATURE from a checkpoint (EMA weights) into a PNG grid, .npy or .csv;
    a conditional model's conditions are written beside vector samples. --title / --labels draw the
    grid as a matplotlib figure with a title and class labels."""
    from flowspec.cli.conditions import requested_conditions
    from flowspec.compile.export import load_model
    from flowspec.core.speed import keep_freed_memory
    from flowspec.train.evaluate import write_samples

    keep_freed_memory()  # activations reuse freed memory instead of page-faulting on fresh pages

    finite_temperature(temperature)
    model = load_model(checkpoint)
    if denoise and not getattr(model, "noise", 0):
        raise FlowSpecError(f"--denoise: {checkpoint}'s spec has no training.noise (the denoiser needs the noise "
                            f"level sigma the model was trained at)")
    if compiled:
        from flowspec.core.speed import compile_model

        compile_model(model)
    if guidance:
        from flowspec.compile.guidance import guided

        model = guided(model, guidance)
    c, n, columns = requested_conditions(model, n, label, per_class, context, limit=MAX_OUTPUT_EXAMPLES)
    if title is not None or labels:
        from flowspec.plot import save_figure
        from flowspec.plot.grids import sample_figure

        figure = sample_figure(model, n=n, temperature=temperature, seed=seed, condition=c, columns=columns,
                               title=title, labels=labels, denoise=denoise)
        path = save_figure(figure, output)
    else:
        path = write_samples(model, checkpoint, n=n, temperature=temperature, output=output, seed=seed,
                             condition=c, columns=columns, denoise=denoise)
    count = f"{per_class} samples per class" if per_class else f"{n} samples"
    denoised = f", denoised at sigma {model.noise:g}" if denoise else ""
    console.print(f"wrote {count} (temperature {temperature:g}{denoised}) to {path}", markup=False)
