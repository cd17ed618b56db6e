"""Training progress in a pipe or a log file: whole periodic lines (step, loss, bits/dim or nats/dim,
rate, ETA), never a redrawn bar that a file cuts short ("2000…", "0:01:…")."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from flowspec.cli import app
from flowspec.train.metrics import PlainProgress, clock_text, progress_display

LINE = re.compile(r"^step +(\d+)/(\d+) \( *(\d+)%\)  loss \d+\.\d{3}  (bits|nats)/dim \d+\.\d{3}(  test \d+\.\d{3})?"
                  r"  lr \d\.\de[-+]\d\d  \d+\.\d steps/s  ETA \d+:\d\d$")


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_come_every_total_over_lines_steps_with_rate_and_eta():
    clock, lines = FakeClock(), []
    show = PlainProgress(total=100, start=0, log=lines.append, lines=4, clock=clock)
    for done in range(1, 101):
        clock.now += 0.5  # 2 steps/s
        show(done, loss=3.0 - done / 100, average=3.1, test=2.9 if done > 50 else None, lr=1e-3)
    assert [int(LINE.match(line).group(1)) for line in lines] == [25, 50, 75, 100]
    assert lines[0] == ("step  25/100 ( 25%)  loss 2.750  bits/dim 3.100  lr 1.0e-03  2.0 steps/s  ETA 0:38")
    assert "test 2.900" in lines[2] and lines[-1].endswith("ETA 0:00")


def test_a_resumed_run_counts_its_rate_from_where_it_started():
    clock, lines = FakeClock(), []
    show = PlainProgress(total=7200, start=3600, log=lines.append, lines=2, clock=clock, unit="nats/dim")
    clock.now += 3600.0  # 1 step/s over this process's 3,600 steps
    show(5400, loss=1.0, average=1.0, test=None, lr=2e-3)
    assert lines == ["step 5400/7200 ( 75%)  loss 1.000  nats/dim 1.000  lr 2.0e-03  0.5 steps/s  ETA 1:00:00"]
    assert clock_text(59.6) == "1:00" and clock_text(3725) == "1:02:05"


def test_train_in_a_pipe_prints_whole_lines(tmp_path, tiny_glow_yaml):
    spec = tmp_path / "tiny.yaml"
    spec.write_text("name: tiny\n" + tiny_glow_yaml + "training: {batch_size: 16, steps: 40, eval_every: 20, "
                    "sample_every: 1000, checkpoint_every: 1000}\n")
    result = CliRunner().invoke(app, ["train", str(spec), "--out", str(tmp_path / "run")])  # stdout: not a TTY
    assert result.exit_code == 0, result.output
    shown = [line for line in result.stdout.splitlines() if line.startswith("step ") and "steps/s" in line]
    assert [LINE.match(line).group(1) for line in shown] == [str(s) for s in range(2, 41, 2)], result.stdout
    assert "test" not in shown[8] and "test" in shown[9]  # the evaluation at step 20 shows from then on
    assert "━" not in result.output and "…" not in result.output


def test_a_terminal_gets_the_bar_and_no_progress_gets_nothing():
    lines = []
    with progress_display(False, 10, 0, lines.append) as show:
        assert show is None
    with progress_display(True, 10, 0, lines.append, interactive=False) as show:
        assert isinstance(show, PlainProgress)
    with progress_display(True, 10, 0, lines.append, interactive=True) as show:
        show(10, 1.0, 1.0, None, 1e-3)
        assert not isinstance(show, PlainProgress)
    assert lines == []
