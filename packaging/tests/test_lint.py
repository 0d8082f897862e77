import dataclasses

import pytest

from pitahaya.packaging import LintError, build_package, lint_feature_code
from pitahaya.packaging.lint import check_feature_code

HEADER = "import math\nfrom pitahaya.client_runtime import FeatureExtractor\n"


def messages(source: str) -> list[str]:
    return [str(v) for v in lint_feature_code(HEADER + source, "scenes/x/features.py")]


def test_the_real_scene_passes(scene):
    assert lint_feature_code(scene.feature_source) == []


def test_import_os_is_refused_with_file_and_line():
    with pytest.raises(LintError) as caught:
        check_feature_code(HEADER + "import os\n", "scenes/x/features.py")
    assert "scenes/x/features.py:3:1: import of 'os' is not allowed" in str(caught.value)
    assert [(v.path, v.line) for v in caught.value.violations] == [("scenes/x/features.py", 3)]


def test_open_is_refused_with_file_and_line():
    found = messages("def f():\n    return open('/etc/passwd').read()\n")
    assert len(found) == 1 and found[0].startswith("scenes/x/features.py:4:12: 'open' is not allowed")


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("from os import path\n", "import from 'os'"),
        ("import subprocess, socket\n", "import of 'subprocess'"),
        ("from . import helpers\n", "relative imports"),
        (
            "from pitahaya.client_runtime.loader import LoadedPackage\n",
            "import from 'pitahaya.client_runtime.loader'",
        ),
        (
            "from pitahaya.client_runtime import _fs\n",
            "'_fs' is not part of the public API",
        ),
        ("x = eval('1 + 1')\n", "'eval' is not allowed"),
        ("run = exec\n", "'exec' is not allowed"),
        ("m = __import__('os')\n", "'__import__' is not allowed"),
        (
            "k = ().__class__.__mro__[1].__subclasses__()\n",
            "'__subclasses__' is not allowed",
        ),
        ("g = math.floor.__globals__\n", "'__globals__' is not allowed"),
        ("b = __builtins__\n", "'__builtins__' is not allowed"),
        (
            "f = getattr(math, 'fl' + 'oor')\n",
            "getattr() needs a literal attribute name",
        ),
        ("f = getattr(math, '__loader__')\n", "getattr() of '__loader__'"),
        (
            "import numpy as np\nx = np.load('weights.npy')\n",
            "attribute 'load' is not allowed",
        ),
        ("from numpy import fromfile\n", "importing numpy.fromfile"),
        ("def f(a):\n    a.tofile('x')\n", "attribute 'tofile' is not allowed"),
        ("def f(:\n", "syntax error"),
    ],
)
def test_escape_attempts_are_refused(source, why):
    found = messages(source)
    assert any(why in message for message in found), found


def test_allowed_constructs_pass():
    source = (
        "from __future__ import annotations\nimport numpy as np\nfrom collections import deque\nfrom collections.abc import Sequence\n"
        "from dataclasses import dataclass\nfrom typing import Any\n"
        "class Extractor(FeatureExtractor):\n    def __init__(self):\n        super().__init__()\n"
        "        self.q = deque(maxlen=3)\n        self.n = getattr(self, 'n', 0)\n"
        "__all__ = ['Extractor']\n"
    )
    assert messages(source) == []


def test_build_refuses_before_touching_mlflow(scene, tmp_path):
    folder = tmp_path / "scene"
    folder.mkdir()
    (folder / "features.py").write_text(scene.feature_source.replace("import math\n", "import math\nimport os\n", 1))
    edited = dataclasses.replace(scene, path=folder, feature_source=(folder / "features.py").read_text())
    line = edited.feature_source.splitlines().index("import os") + 1
    with pytest.raises(LintError, match=rf"features\.py:{line}:1: import of 'os'"):
        build_package(
            run_id="no-such-run",
            scene=edited,
            version="1.0.0",
            tracking_uri="sqlite:///" + str(tmp_path / "none.db"),
            out_dir=tmp_path / "out",
        )
    assert not (tmp_path / "out").exists() and not (tmp_path / "none.db").exists()
