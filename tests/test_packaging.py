"""The project's own packaging metadata loads without setuptools deprecation warnings:
``pip install -e .`` must not greet a newcomer with a warning about our pyproject.toml."""

from __future__ import annotations

import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

def test_pyproject_loads_without_deprecation_warnings() -> None:
    import setuptools
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    assert int(setuptools.__version__.split(".")[0]) >= 77  # the release that reads SPDX licenses
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any SetuptoolsDeprecationWarning fails the test
        dist = apply_configuration(Distribution(), REPO / "pyproject.toml")
    assert dist.metadata.license_expression == "Apache-2.0"
    assert dist.metadata.license_files and all((REPO / f).is_file() for f in dist.metadata.license_files)
