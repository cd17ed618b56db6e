"""The mixing check: a pass over the graph's layers that finds entries the flow never makes depend
on other entries.

Each kind states two pure rules (no weights): :meth:`~flowspec.layers.base.LayerConfig.dependent_entries`,
the entries it transforms as a function of other entries (a coupling's transformed half), and
:meth:`~flowspec.layers.base.LayerConfig.entry_map`, where it moves entries (squeeze, permute, split;
``invconv`` mixes the channels of a pixel). Walking the flow with a boolean per entry:

* **never transformed** (over the whole flow): an entry of a latent that no layer made depend on
  other entries is modelled on its own by its prior. An error when two or more couplings came
  before and the prior does not see other entries either (the top prior, a split's ``standard``
  prior): one of them was meant to transform it; a warning under a ``conditional`` split prior,
  which does, or after a single coupling (a minimal example a user may mean).
* **not transformed between two factor-outs**: the same, counted from the previous split; a warning
  (the layers before the split did transform it).
* **two couplings in a row on the same entries**: every entry the previous dependent layer left
  unchanged reaches this one only in entries it leaves unchanged too, so both pass them through
  (a 1x1 convolution mixes channels, not pixels: two checkerboard couplings of the same parity
  with only ``invconv`` between). A warning: the two compose into one coupling of the same half,
  which a user may mean, but the halves were usually meant to swap.

A kind that changes its shape without an ``entry_map`` ends the check (nothing is reported past it).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from flowspec.errors import Problem

HINT = "swap the halves between couplings (parity: 1, or parity: alternate in a repeat block or step)"


def _name(node) -> str:
    return f"{node.name} ({node.kind})"


def _line(problem: Problem) -> str:
    return f" (line {problem.line})" if problem.line is not None else ""


def mixing_problems(layers, input_shape: tuple, problem: Callable) -> tuple[list[Problem], list[Problem]]:
    """``(errors, warnings)`` of the mixing check over ``layers`` (the graph's :class:`LayerNode`
    list, shapes inferred); ``problem(message, path, hint)`` locates a row in the YAML."""
    errors: list[Problem] = []
    warnings: list[Problem] = []
    if not any(node.config.dependent_entries(node.in_shape) is not None for node in layers):
        return errors, warnings  # a flow of elementwise and linear layers: nothing to check
    ever = np.zeros(input_shape, dtype=bool)  # made dependent anywhere before
    since = np.zeros(input_shape, dtype=bool)  # ... since the last factor-out
    passed: np.ndarray | None = None  # what the last dependent layer left unchanged, moved along since
    last = None  # that layer
    count = 0  # dependent layers so far
    for node in layers:
        config, shape = node.config, node.in_shape
        dependent = config.dependent_entries(shape)
        if dependent is not None:
            if passed is not None and passed.any() and not (passed & dependent).any():
                where = problem("", last.path)
                warnings.append(problem(
                    f"{_name(node)} on input {shape}: transforms none of the {int(passed.sum())} entries that "
                    f"{_name(last)}{_line(where)} left unchanged, so they pass both couplings unchanged",
                    node.path, HINT))
            ever, since = ever | dependent, since | dependent
            passed, last, count = ~dependent, node, count + 1
        moved = [config.entry_map(shape, marks) for marks in (ever, since) + ((passed,) if passed is not None else ())]
        if any(m is None for m in moved):
            return errors, warnings  # a kind that does not say where its entries go
        (ever, ever_out), (since, since_out) = moved[0], moved[1]
        if passed is not None:
            passed = moved[2][0]
        if ever_out is not None:  # a factored latent leaves the flow here
            _check_latent(node, ever_out, since_out, config.prior_sees_kept, count < 2, last, problem,
                          errors, warnings)
            since = np.zeros_like(since)
            passed = None
    if layers:
        _check_latent(layers[-1], ever, since, False, count < 2, last, problem, errors, warnings, top=True)
    return errors, warnings


def _check_latent(node, ever: np.ndarray, since: np.ndarray, prior_sees_kept: bool, single: bool, last, problem: Callable,
                  errors: list, warnings: list, top: bool = False) -> None:
    """Report the entries of a latent (factored out at ``node``, or the top one) that no layer made
    depend on other entries: over the whole flow (an error, unless its prior sees the kept entries
    or a ``single`` coupling came before), or since the previous factor-out (a warning)."""
    what = "the top latent" if top else f"the latent {_name(node)} factors out"
    at = last if top and last is not None else node
    never = int((~ever).sum())
    if never:
        prior = "their conditional prior alone relates them to the kept entries" if prior_sees_kept else \
            "their prior models each on its own"
        message = (f"{never} of the {ever.size} entries of {what} are never transformed by a layer that makes "
                   f"them depend on other entries; {prior}")
        (warnings if prior_sees_kept or single else errors).append(problem(message, at.path, HINT))
        return
    stale = int((~since).sum())
    if stale:
        warnings.append(problem(f"{stale} of the {since.size} entries of {what} are not transformed by any "
                                f"layer that makes them depend on other entries since the previous factor-out",
                                at.path, HINT))
