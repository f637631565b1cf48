"""Loading the real Lambda handler modules from ``functions/`` outside Lambda."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS_DIR = Path(os.environ.get("VISMA_WEBHOOKS_FUNCTIONS_DIR", PROJECT_ROOT / "functions"))


def load_function(name: str) -> ModuleType:
    """Import ``functions/<name>/app.py`` afresh as module ``<name>_app``.

    Each call runs the module's initialisation again, as a Lambda cold start does, so
    that it picks up the environment as it is now.
    """
    path = FUNCTIONS_DIR / name / "app.py"
    module_name = f"{name}_app"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"no Lambda function at {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
