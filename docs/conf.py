"""Sphinx configuration of fastmlp's API reference, generated from the numpydoc docstrings:
sphinx-build -W docs docs/_build (CI builds it, warnings as errors)."""
import fastmlp

project = "fastmlp"
release = version = fastmlp.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.autosummary", "numpydoc"]
numpydoc_show_class_members = False  # the API page lists members itself
exclude_patterns = ["_build", "performance.md"]
html_theme = "alabaster"
