"""Unit tests of pitahaya-packaging.

This folder is a package on purpose: under pytest's ``--import-mode=importlib`` a folder
without ``__init__.py`` gets the module name ``packaging.tests.<file>``, and pytest would
then register the repo's ``packaging/`` folder as the top-level ``packaging`` module,
shadowing the PyPA ``packaging`` library that MLflow imports.
"""
