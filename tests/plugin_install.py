"""Install the example plugin package (``tests/plugin_example/flowspec_softplus``) the way pip would
make it visible: a ``.dist-info`` folder whose ``entry_points.txt`` declares its ``flowspec.kinds``
entry point, on ``sys.path`` beside the package's source. flowspec finds it through
``importlib.metadata``, as it finds any installed package."""

from __future__ import annotations

import contextlib
import importlib
import sys
import tempfile
from pathlib import Path

from flowspec.layers.kinds import UNIONS, reload_plugins

SOURCE = Path(__file__).resolve().parent / "plugin_example"
ENTRY_POINTS = "[flowspec.kinds]\nsoftplus = flowspec_softplus:register\n"


def write_dist_info(folder: Path) -> Path:
    """The installed metadata of the example package, as a wheel install leaves it."""
    info = folder / "flowspec_softplus-0.1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: flowspec-softplus\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    (info / "top_level.txt").write_text("flowspec_softplus\n")
    return info


@contextlib.contextmanager
def example_plugin_installed():
    """The example package installed for the duration: its kinds registered through the entry
    point, and unregistered (with the metadata removed from ``sys.path``) on exit."""
    with tempfile.TemporaryDirectory() as site:
        write_dist_info(Path(site))
        sys.path[:0] = [site, str(SOURCE)]
        importlib.invalidate_caches()
        try:
            reload_plugins()
            yield sys.modules["flowspec_softplus"]
        finally:
            plugin = sys.modules.get("flowspec_softplus")
            for what, configs in (plugin.KINDS.items() if plugin else ()):
                registry = UNIONS[what]
                for config in configs:
                    registry.pop(config.model_fields["kind"].default, None)
            for path in (site, str(SOURCE)):
                sys.path.remove(path)
            importlib.invalidate_caches()
            reload_plugins()
