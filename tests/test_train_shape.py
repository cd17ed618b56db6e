"""The training package stays readable: no function in ``flowspec/train/`` is longer than 60 lines
(its ``def`` line to its last, docstring included), read from each file's ast."""

from __future__ import annotations

import ast
from pathlib import Path

TRAIN = Path(__file__).resolve().parent.parent / "flowspec" / "train"
LIMIT = 60


def long_functions(folder: Path, limit: int) -> list[str]:
    found = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    found.append(f"{path.name}:{node.lineno}: {node.name} is {length} lines")
    return found


def test_no_function_in_train_is_over_60_lines():
    offenders = long_functions(TRAIN, LIMIT)
    assert not offenders, "functions over 60 lines in flowspec/train:\n" + "\n".join(offenders)


def test_the_walk_finds_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    (tmp_path / "long.py").write_text(f"def long():\n{body}\n\ndef short():\n    return 1\n")
    assert long_functions(tmp_path, LIMIT) == [f"long.py:1: long is {LIMIT + 1} lines"]
