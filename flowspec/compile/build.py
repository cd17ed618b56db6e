"""``flowspec build``: the output folder of a spec.

``<folder>/expanded.yaml`` (the explicit spec), ``model.pt`` (spec + initial weights, loadable with
:func:`flowspec.load_model`), ``diagram.svg`` and ``report.md`` (:mod:`flowspec.render`,
:mod:`flowspec.report`), ``density.pt2`` and ``sample.pt2`` (``torch.export`` programs,
checked equal to the in-memory model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from flowspec.compile.export import save_model
from flowspec.compile.model import FlowModel
from flowspec.core.build import BuildRow
from flowspec.family import family_of
from flowspec.graph.build import FlowGraph
from flowspec.files import make_folder, write_text


@dataclass
class BuildResult:
    graph: FlowGraph
    model: FlowModel
    rows: list[BuildRow]
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # one line each, e.g. a file that was skipped

    @property
    def total_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def build_rows(graph: FlowGraph, model: FlowModel) -> list[BuildRow]:
    rows = [BuildRow(node.index, node.name, node.kind, node.in_shape, node.out_shape,
                     sum(p.numel() for p in layer.parameters()))
            for node, layer in zip(graph.layers, model.layers)]
    prior = sum(p.numel() for p in model.top_prior.parameters())
    rows.append(BuildRow(len(rows), "prior", f"prior ({graph.spec.prior.kind})", graph.output_shape,
                         graph.output_shape, prior))
    if getattr(model, "columns", None) is not None:  # a table's typed columns, before the first layer
        rows.insert(0, BuildRow(-1, "columns", "columns", graph.input_shape, graph.input_shape,
                                sum(p.numel() for p in model.columns.parameters())))
    return rows


def write_diagram_and_report(result: BuildResult, folder: Path) -> None:
    """``diagram.svg`` (skipped with a note when Graphviz's ``dot`` is missing) and ``report.md``
    (the family's cost report on an A100 profile at the spec's training batch, else 64)."""
    import shutil

    from flowspec.render import render
    from flowspec.report import load_devices, to_markdown

    if shutil.which("dot"):
        result.files["diagram"] = render(result.graph, folder / "diagram.svg", "auto")
    else:
        result.notes.append("skipped diagram.svg: Graphviz `dot` is not installed (apt-get install graphviz)")
    training = getattr(result.graph.spec, "training", None)
    batch = getattr(training, "batch_size", None) or 64
    report = family_of(result.graph.spec).cost_report(result.graph, load_devices()["a100"], batch)
    write_text(folder / "report.md", to_markdown(report))
    result.files["cost report"] = folder / "report.md"


def build_folder(spec, folder: str | Path, export: bool = True) -> BuildResult:
    """Write the build folder of a spec of any family: its family builds the graph, the model, the
    table rows, the explicit spec and the ``torch.export`` programs."""
    family = family_of(spec)
    folder = Path(folder)
    graph = family.build_graph(spec)
    model = family.compile(graph).eval()
    result = BuildResult(graph, model, family.build_rows(graph, model))
    make_folder(folder)
    expanded = folder / "expanded.yaml"
    write_text(expanded, yaml.safe_dump(family.explicit_spec(spec), sort_keys=False, default_flow_style=None))
    result.files["expanded spec"] = expanded
    save_model(model, folder / "model.pt")
    result.files["model"] = folder / "model.pt"
    write_diagram_and_report(result, folder)
    if export:
        for direction, path in family.export(model, folder).items():
            result.files[f"{direction} program"] = path
    return result
