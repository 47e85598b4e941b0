"""plugins/: Airflow loads the campaign view's plugin, and nothing of the package twice.

Airflow's plugins manager imports every ``.py`` file under the plugins folder by its bare
name, in every component and every task try; ``plugins/.airflowignore`` keeps it to
``campaign_view/plugin.py``. Run in a fresh interpreter, as a task try loads plugins.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"

LOAD = """
    import json, sys
    from airflow._shared.plugins_manager.plugins_manager import _load_plugins_from_plugin_directory
    before = set(sys.modules)
    plugins, errors = _load_plugins_from_plugin_directory(sys.argv[1])
    added = sorted(m for m in set(sys.modules) - before if "." not in m)
    print(json.dumps({"plugins": [p.name for p in plugins], "errors": errors, "added": added}))
"""


def test_only_the_campaign_view_plugin_is_loaded() -> None:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(LOAD), str(PLUGINS)], capture_output=True,
                            text=True, timeout=120, check=True)
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["plugins"] == ["campaign_view"]
    assert loaded["errors"] == {}
    # The plugin's own module, and packages it imports (campaign_view, regional_training,
    # third-party ones); no module of ours under a bare file name ("tasks", "settings").
    ours = {p.stem for p in PLUGINS.rglob("*.py")} - {"plugin"}
    assert "plugin" in loaded["added"]
    assert sorted(set(loaded["added"]) & ours) == []
