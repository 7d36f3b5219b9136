"""Shared test settings: fast mode, a headless matplotlib, and the repository root."""
import os
from pathlib import Path

import pytest

os.environ.setdefault('CRYSTAL_TUTORIAL_MODE', 'fast')
os.environ.setdefault('MPLBACKEND', 'Agg')

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def root():
    return ROOT
