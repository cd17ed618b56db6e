"""The cost report of every shipped spec stays what it was when its snapshot was stored
(tests/data/reports/<spec>.json, ``flowspec report SPEC --format json --device a100``): parameter
count, forward / inverse / log-det FLOPs and training activation bytes, per row and in total. A
refactor that changes what a spec builds or costs fails here; a spec that changes on purpose
refreshes its snapshot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowspec.report import report_spec, to_json
from flowspec.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOTS = sorted((ROOT / "tests" / "data" / "reports").glob("*.json"))
ROW_FIELDS = ("name", "kind", "in_shape", "out_shape", "params", "flops_forward", "flops_inverse", "flops_logdet",
              "matmul_flops_forward", "matmul_flops_inverse", "train_bytes")
TOTAL_FIELDS = ("params", "flops_forward", "flops_inverse", "flops_logdet", "train_activation_bytes", "train_bytes",
                "sample_bytes")


@pytest.mark.parametrize("snapshot", SNAPSHOTS, ids=[p.stem for p in SNAPSHOTS])
def test_report_matches_its_snapshot(snapshot):
    spec_path = ROOT / "specs" / f"{snapshot.stem}.yaml"
    if not spec_path.exists():
        pytest.fail(f"{snapshot.name} has no spec: remove the snapshot with the spec")
    expected = json.loads(snapshot.read_text())
    actual = json.loads(to_json(report_spec(load_spec(spec_path), "a100", expected["batch"])))
    for field in TOTAL_FIELDS:
        assert actual[field] == pytest.approx(expected[field], rel=1e-12), field
    assert len(actual["rows"]) == len(expected["rows"])
    for got, want in zip(actual["rows"], expected["rows"]):
        for field in ROW_FIELDS:
            assert got[field] == pytest.approx(want[field], rel=1e-12) if isinstance(want[field], float) \
                else got[field] == want[field], f"{want['name']}.{field}: {got[field]} != {want[field]}"


def test_every_shipped_spec_has_a_snapshot():
    specs = {p.stem for p in (ROOT / "specs").glob("*.yaml")}
    assert specs <= {p.stem for p in SNAPSHOTS}, f"add a report snapshot for {sorted(specs - {p.stem for p in SNAPSHOTS})}"
