"""Sphinx configuration for skinfluence (numpydoc + sphinx-gallery)."""

import os

import skinfluence

project = "skinfluence"
author = "skinfluence developers"
release = skinfluence.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
autosummary_generate = True
# class.rst lists each class's public methods (the explainer's API lives there).
templates_path = ["_templates"]
numpydoc_show_class_members = False
# Links to other projects' docs need their inventories from the network; CI machines
# have none, so the links are opt-in: SKINFLUENCE_DOCS_INTERSPHINX=1.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable", None),
    "sklearn": ("https://scikit-learn.org/stable", None),
}
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "doc_module": "skinfluence",
    "backreferences_dir": "generated",
    "filename_pattern": r"/plot_",
}
html_theme = "pydata_sphinx_theme"
exclude_patterns = ["_build"]

if not os.environ.get("SKINFLUENCE_DOCS_INTERSPHINX"):
    intersphinx_mapping = {}
