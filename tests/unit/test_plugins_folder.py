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


WARNINGS = """
    import json, sys, warnings
    import airflow.configuration  # shows Airflow's deprecation warnings, as in every component
    from airflow._shared.plugins_manager.plugins_manager import _load_plugins_from_plugin_directory
    if sys.argv[2] == "preloaded":
        from regional_training import executors
        executors.preload()
    with warnings.catch_warnings(record=True) as shown:
        _load_plugins_from_plugin_directory(sys.argv[1])
    print(json.dumps([str(w.message) for w in shown]))
"""


def _warnings_while_loading(mode: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(WARNINGS), str(PLUGINS), mode],
                            capture_output=True, text=True, timeout=180, check=True)
    return list(json.loads(result.stdout.strip().splitlines()[-1]))


def test_a_preloaded_try_does_not_log_pathspecs_deprecation() -> None:
    """Airflow's glob .airflowignore matcher warns under its pinned pathspec in every
    process that reads the file; the preloaded executor's workers (every try) do not."""
    assert any("GitWildMatchPattern" in w for w in _warnings_while_loading("bare"))
    assert [w for w in _warnings_while_loading("preloaded") if "GitWildMatchPattern" in w] == []
