"""The notebooks in notebooks/ run top to bottom on CPU and are committed without outputs."""

from __future__ import annotations

import os
from pathlib import Path

import nbclient
import nbformat
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = {"advcam_walkthrough.ipynb", "sweep_report.ipynb", "your_classifier.ipynb"}


def test_the_notebooks_are_there():
    assert EXPECTED <= set(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, cell in enumerate(nb.cells)
             if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]
    assert not dirty, f"{name}: cells {dirty} carry outputs; clear them before committing"


KERNEL_NAME = "advcam-pl-test"


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernel on this interpreter (a kernelspec of its own, so no system ``python3`` kernel is
    picked), with this checkout's sources first on the path, and one thread."""
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("jupyter")
    install(kernel_name=KERNEL_NAME, prefix=str(prefix))  # argv: sys.executable -m ipykernel_launcher
    mp = pytest.MonkeyPatch()
    mp.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")])))
    mp.setenv("OMP_NUM_THREADS", "1")
    for var in ("ADVCAM_CHECKPOINT", "ADVCAM_SWEEP_JSON"):  # the notebooks' own small defaults
        mp.delenv(var, raising=False)
    yield
    mp.undo()


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, kernel_env):
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name=KERNEL_NAME,
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, on the first error
    errors = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
              if out.output_type == "error"]
    assert not errors
