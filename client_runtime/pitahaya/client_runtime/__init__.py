"""pitahaya on-device runtime: the contract every other component builds on.

It defines the event schema (`View`, `Candidate`), the feature-extractor interface, the
algorithm package format and release document, and runs packages on devices.

Importing this package is cheap: each public name loads its module on first use (PEP 562), so
a sandboxed worker that only needs the feature-extractor contract and the loader never pays
for the TUF client, and ``from pitahaya.client_runtime import FeatureExtractor`` in a
package's ``features.py`` stays fast.
"""

import lazy_loader

# The public names and the submodule each comes from are listed once, in ``__init__.pyi``: type
# checkers read it as this package's stub, and each name loads its module on first use (PEP 562).
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
