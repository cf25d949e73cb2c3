"""JupyterLab defaults for the course's own environment: save the widgets' state with the notebook.

    python tools/lab_settings.py        # (make lab runs it)

A learner who runs a notebook in JupyterLab and saves it then finds its widgets drawn when the
notebook is reopened, rather than "Error displaying widget: model not found". Writes (merging)
``<sys.prefix>/share/jupyter/lab/settings/overrides.json`` — the defaults of this virtual environment's
JupyterLab only; a learner's own settings still win.
"""
import json
import sys
from pathlib import Path

from fcnlib import paths

OVERRIDES = {"@jupyter-widgets/jupyterlab-manager:plugin": {"saveState": True}}


def main() -> None:
    path = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    current = json.loads(path.read_text()) if path.exists() else {}
    for plugin, values in OVERRIDES.items():
        current.setdefault(plugin, {}).update(values)
    paths.atomic_write_text(path, json.dumps(current, indent=2))


if __name__ == "__main__":
    main()
