"""Every numbered notebook is a test: it must run top to bottom in fast mode, with all its asserts passing.

Each notebook runs in its own `nbdev_test` process (the same runner as `nbdev_test` on the whole folder), so that a
failure names the notebook and shows the cell that failed.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / 'nbs').glob('[0-9][0-9]*_*.ipynb'))
MAX_NOTEBOOK_BYTES = 3 * 1024 * 1024


def test_notebooks_exist():
    assert len(NOTEBOOKS) >= 3, f"expected the numbered notebooks in {ROOT / 'nbs'}, found {NOTEBOOKS}"


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_fast_mode(nb):
    nbdev_test = Path(sys.executable).parent / 'nbdev_test'
    env = {**os.environ, 'CRYSTAL_TUTORIAL_MODE': 'fast', 'MPLBACKEND': 'Agg'}
    proc = subprocess.run([str(nbdev_test), '--path', str(nb.relative_to(ROOT))], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{nb.name} failed in fast mode:\n{proc.stderr[-6000:]}"


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_small_enough_to_read_online(nb):
    assert nb.stat().st_size < MAX_NOTEBOOK_BYTES, f"{nb.name} is {nb.stat().st_size / 2**20:.1f} MB; keep it under 3 MB"


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_outputs_name_no_local_folder(nb):
    sys.path.insert(0, str(ROOT / 'scripts'))
    from clean_outputs import local_paths
    found = local_paths(nb)
    assert not found, f"{nb.name} outputs name local folders (run python scripts/clean_outputs.py): {found[:3]}"
