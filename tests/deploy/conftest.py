"""Trained two-parameter runs shared by the export and apply tests (trained once each)."""

from __future__ import annotations

import pytest

from tests.deploy import two_parameters


@pytest.fixture(scope="session")
def two_parameter_run(tmp_path_factory):
    """``run(conditioning)`` -> ``(config path, config)`` of the trained two-parameter search."""
    runs: dict = {}

    def run(conditioning: str):
        if conditioning not in runs:
            folder = tmp_path_factory.mktemp(f"xyh_{conditioning}")
            runs[conditioning] = two_parameters.train_run(folder, conditioning)
        return runs[conditioning]

    return run
