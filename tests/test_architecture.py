"""The code's shape: dependencies point one way, and kinds own their knowledge.

Imports are read from each file's ast (every ``import`` / ``from ... import``, lazy ones inside
functions included), resolved to flowspec's modules. There must be no cycle between modules, and
none between subpackages (``spec``, ``graph``, ``compile``, ``report``, ...). Outside a kind's own
package, no code may test ``isinstance(..., SomethingConfig)``: callers ask the kind.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parent.parent / "flowspec"
REFERENCE = re.compile(r"flowspec(\.\w+)+:\w+")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _resolve(target: str, modules: dict) -> str | None:
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def _imports(path: Path, modules: dict) -> set[str]:
    """Every flowspec module ``path`` imports, and every ``"flowspec.module:name"`` reference it
    holds (a family's stages, imported on first use, are dependencies all the same)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and REFERENCE.fullmatch(node.value):
            names = [node.value.partition(":")[0]]
        else:
            continue
        found |= {m for m in (_resolve(n, modules) for n in names if n.startswith("flowspec")) if m}
    return found


def _graphs() -> tuple[nx.DiGraph, nx.DiGraph]:
    modules = _modules()
    by_module, by_package = nx.DiGraph(), nx.DiGraph()
    for name, path in modules.items():
        for target in _imports(path, modules) - {name}:
            by_module.add_edge(name, target)
            source_pkg, target_pkg = name.split(".")[1:2], target.split(".")[1:2]
            # the top package (flowspec/__init__.py) is the API facade: it may import everything
            if source_pkg and target_pkg and source_pkg != target_pkg:
                by_package.add_edge(source_pkg[0], target_pkg[0])
    return by_module, by_package


def test_no_import_cycle_between_modules():
    by_module, _ = _graphs()
    by_module.remove_nodes_from(["flowspec"])
    cycles = list(nx.simple_cycles(by_module))
    assert not cycles, f"import cycles between modules: {cycles[:5]}"


def test_no_import_cycle_between_subpackages():
    _, by_package = _graphs()
    cycles = list(nx.simple_cycles(by_package))
    assert not cycles, f"import cycles between subpackages: {cycles[:5]}"


def test_the_pipeline_points_one_way():
    """spec -> graph -> compile / render / report -> train -> cli, never backwards."""
    _, by_package = _graphs()
    order = ["spec", "graph", "compile", "train", "cli"]
    for i, lower in enumerate(order):
        for higher in order[i + 1:]:
            assert not by_package.has_edge(lower, higher), f"{lower} imports {higher}"
    for sibling in ("render", "report"):
        for higher in ("train", "cli"):
            assert not by_package.has_edge(sibling, higher), f"{sibling} imports {higher}"
        assert not by_package.has_edge("spec", sibling) and not by_package.has_edge("graph", sibling)


def _config_names() -> set[str]:
    names = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and (node.name.endswith("Config") or node.name.endswith(
                    ("Conditioner", "Transform", "Dequantization"))):
                names.add(node.name)
    return names


def test_no_isinstance_dispatch_on_kind_configs_outside_their_files():
    configs = _config_names()
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance" and len(node.args) == 2:
                classes = node.args[1].elts if isinstance(node.args[1], ast.Tuple) else [node.args[1]]
                for cls in classes:
                    name = getattr(cls, "id", None) or getattr(cls, "attr", None)
                    if name in configs and name not in defined:
                        offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: isinstance(..., {name})")
    assert not offenders, "dispatch on a kind's config outside its file:\n" + "\n".join(offenders)


def _kinds_defined(tree) -> set[str]:
    """The kinds a file defines: the values of the ``Literal[...]`` of its ``kind`` fields
    (``kind: Literal["name"] = "name"``, ``kind: Optional[Literal["conv", "mlp"]]``)."""
    kinds = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == "kind":
            kinds |= {c.value for c in ast.walk(node.annotation)
                      if isinstance(c, ast.Constant) and isinstance(c.value, str)}
    return kinds


def _names_kind(node) -> bool:
    """``x.kind``, ``kind``, or a call of a function named ``..._kind`` (``encoder_kind(spec)``)."""
    if isinstance(node, ast.Call):
        node = node.func
        name = getattr(node, "attr", None) or getattr(node, "id", None) or ""
        return name.endswith("_kind")
    name = getattr(node, "attr", None) or getattr(node, "id", None)
    return name == "kind"


def registered_kind_names() -> set[str]:
    """Every name of every registry's kinds (layers, transforms, conditioners, priors, conditions,
    dequantizers, likelihoods): the closed sets string dispatch would reach into."""
    import flowspec  # noqa: F401  (registers every kind)
    from flowspec.layers.kinds import UNIONS
    from flowspec.layers import LAYER_KINDS
    from flowspec.spec.models import SPEC_MODELS

    for family in SPEC_MODELS:  # a family's spec model imports its own kinds (the VAE's likelihoods)
        SPEC_MODELS[family]

    return set(LAYER_KINDS) | {kind for registry in UNIONS.values() for kind in registry}


def _strings(node) -> list[str] | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and node.elts and all(
            isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
        return [e.value for e in node.elts]
    return None


def kind_string_comparisons(tree, registered: set[str]) -> list[tuple[int, str]]:
    """``x.kind == "name"``, ``kind != "name"``, ``x.kind in ("a", "b")`` with a registered kind's
    name: (line, kinds compared), leaving out the kinds the file itself defines. (Other ``kind``
    strings, numpy's dtype kinds or a data set's, are no registry's.)"""
    own = _kinds_defined(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare) or len(node.ops) != 1:
            continue
        if not isinstance(node.ops[0], (ast.Eq, ast.NotEq, ast.In, ast.NotIn)):
            continue
        left, right = node.left, node.comparators[0]
        for subject, other in ((left, right), (right, left)):
            strings = _strings(other)
            if _names_kind(subject) and strings and set(strings) & registered and not set(strings) <= own:
                found.append((node.lineno, ", ".join(strings)))
    return found


def test_no_kind_string_comparison_outside_the_kinds_file():
    """Closed sets dispatched by string are what registries replace: outside the file that defines
    a kind, code asks the kind (a method, a declared property), never compares its name."""
    offenders, registered = [], registered_kind_names()
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, kinds in kind_string_comparisons(ast.parse(path.read_text(encoding="utf-8")), registered):
            offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line}: kind compared with {kinds}")
    assert not offenders, "string dispatch on a kind outside its file:\n" + "\n".join(offenders)


def test_the_kind_comparison_check_catches_what_it_should():
    code = '''
class Own:
    kind: Literal["mine"] = "mine"
def f(config, kind):
    a = config.kind == "other"
    b = kind in ("x", "y")
    c = "z" != config.kind
    d = config.kind == "mine"
    e = config.name == "other"
    f = encoder_kind(spec) == "other"
    g = array.dtype.kind == "f"
'''
    found = kind_string_comparisons(ast.parse(code), {"other", "x", "z", "mine"})
    assert found == [(5, "other"), (6, "x, y"), (7, "z"), (10, "other")]
    assert {"affine", "squeeze", "class", "learned", "logistic", "uniform", "bernoulli"} <= registered_kind_names()


def test_families_sit_beside_each_other_on_the_shared_core():
    """``core`` (what every family shares: protocol, check result, build row, cost types and rules)
    imports no family and no kinds; the vae family imports none of the
    flow's packages (compile, graph, report, render), only ``core`` and the shared kinds."""
    _, by_package = _graphs()
    flow_packages = ("compile", "graph", "report", "render")
    for target in flow_packages + ("vae", "families", "train", "cli", "layers", "priors", "dequant"):
        assert not by_package.has_edge("core", target), f"core imports {target}"
    for target in flow_packages:
        assert not by_package.has_edge("vae", target), f"vae imports the flow's {target}"


def test_cost_types_keep_their_old_import_path():
    from flowspec.core import costs
    from flowspec.layers import base

    assert base.LayerCost is costs.LayerCost and base.MatmulOp is costs.MatmulOp and base.numel is costs.numel
