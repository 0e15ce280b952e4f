"""Every example script runs (with a non-interactive matplotlib backend)."""

import base64
import os
import runpy
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("plot_*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path, monkeypatch):
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    try:
        runpy.run_path(str(path), run_name="__main__")
    finally:
        plt.close("all")


NOTEBOOKS = sorted((Path(__file__).parents[1] / "examples" / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes_and_draws_every_display(path, tmp_path):
    """Run the notebook in a Jupyter kernel, as a user would; keep its figures as PNG.

    The figures go to ``$SKINFLUENCE_FIGURES_DIR`` when set (CI points it at its log
    folder so a reviewer can look at them), else to a temporary folder.
    """
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")

    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not any(c.get("outputs") for c in code), f"{path.name} is saved with outputs"
    n_displays = sum("Display.from_" in c.source for c in code)
    assert n_displays > 0

    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=600,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError naming the failing cell

    out = Path(os.environ.get("SKINFLUENCE_FIGURES_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f"{path.stem}-cell*.png"):  # a previous run's, not this one's
        stale.unlink()
    saved = []
    for n, cell in enumerate(code, start=1):
        images = [o["data"]["image/png"] for o in cell.outputs if "image/png" in o.get("data", {})]
        for m, png in enumerate(images, start=1):
            target = out / f"{path.stem}-cell{n:02d}-{m}.png"
            target.write_bytes(base64.b64decode(png))
            saved.append(target)
        if "Display.from_" in cell.source:
            assert images, f"code cell {n} of {path.name} draws a Display but shows no figure"
    assert len(saved) >= n_displays
    for target in saved:
        assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", target
