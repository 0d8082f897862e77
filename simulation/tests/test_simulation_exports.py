"""The simulator runs without the training library."""

import subprocess
import sys



def test_it_simulates_where_the_training_library_and_lightgbm_cannot_be_imported() -> None:
    code = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"lightgbm", "sklearn", "dask"} or name.startswith("pitahaya.training"):
            raise ImportError(f"{name} is not installed")
sys.meta_path.insert(0, Block())
from pitahaya.client_runtime import View
from pitahaya.simulation import Session, SimulationConfig, generated_sessions, generated_traces, simulate
views = [View(f"u{i % 3}", f"v{i}", 1_000.0 + 30.0 * i, 20.0, 5.0 + i % 7, 2_500_000) for i in range(60)]
sessions = generated_sessions(views, test_from=1_900.0, min_views=2)
result = simulate(sessions, {"low": generated_traces("low", 1, samples=200)}, config=SimulationConfig(margins=(1.0,)))
print(sorted(result.summary["policies"]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['fixed', 'oracle', 'oracle plan']"
