"""notebooks/colab_tpu.ipynb: structure checks by default; (slow) the SMOKE run executed with
nbclient ends with the report table and the quality-vs-MACs image."""

import ast
import re
from pathlib import Path

import pytest

NB = Path(__file__).resolve().parents[1] / "notebooks" / "colab_tpu.ipynb"
KNOBS = ("SMOKE", "REPO_URL", "JAX_BUILD", "USE_DRIVE", "WORKDIR", "DOWNLOAD_DIR", "DATA", "TEACHER_PKL", "CLIP_PT",
         "DINO_PTH", "INCEPTION_PTH", "RATIO", "PRUNE_SAMPLES", "DIME_STATS_N", "KIMG", "BATCH",
         "SAMPLE_EVERY_STEPS", "NUM_GEN", "MIXED_PRECISION", "MATMUL_PRECISION")


def _load():
    nbformat = pytest.importorskip("nbformat")
    return nbformat.read(NB, as_version=4)


def test_structure_parameters_and_cleared_outputs():
    nb = _load()
    cells = nb.cells
    params = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    assigned = {t.id for node in ast.parse(params[0].source).body if isinstance(node, ast.Assign)
                for t in node.targets}
    assert set(KNOBS) <= assigned and "SMOKE = False" in params[0].source
    for i, c in enumerate(cells):
        if c.cell_type != "code":
            continue
        assert not c.outputs and c.execution_count is None, f"cell {i} has outputs (commit it cleared)"
        ast.parse(c.source)  # valid Python
        prev = cells[i - 1]
        assert prev.cell_type == "markdown", f"code cell {i} has no Markdown sentence before it"
        text = prev.source.strip()
        if i > 2:  # the title cell carries a heading too
            assert "\n" not in text and len(re.findall(r"[.!?](\s|$)", text)) == 1, f"cell {i - 1}: one sentence"


# The smallest budgets the SMOKE cells accept, injected as papermill injects parameters: one
# training step of 16 images in float32 (bfloat16 is emulated on a CPU), 8 pruning samples,
# 64 evaluation samples. Every cell still runs; SMOKE=True alone uses the notebook's larger
# smoke sizes (about 2.5 min of CPU).
SMOKE_PARAMS = {"KIMG": 0.016, "BATCH": 16, "SAMPLE_EVERY_STEPS": 1, "PRUNE_SAMPLES": 8, "NUM_GEN": 64,
                "MIXED_PRECISION": False}


def test_smoke_run_ends_with_table_and_image(tmp_path, monkeypatch):
    """The whole notebook with SMOKE=True and the smallest budgets on this CPU (offline)."""
    nbclient = pytest.importorskip("nbclient")
    nb = _load()
    for c in nb.cells:
        if "parameters" in c.metadata.get("tags", []):
            c.source += f'\nSMOKE = True\nWORKDIR = "{tmp_path / "work"}"\n' + "".join(
                f"{k} = {v!r}\n" for k, v in SMOKE_PARAMS.items())  # as papermill injects
    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    nbclient.NotebookClient(nb, timeout=1800, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    kinds = {k for o in last.outputs for k in o.get("data", {})}
    assert "image/png" in kinds and "text/markdown" in kinds
    table = next(o["data"]["text/markdown"] for o in last.outputs if "text/markdown" in o.get("data", {}))
    assert "| nickel_dime |" in table or "nickel_dime" in table
    assert (tmp_path / "work" / "export" / "rosinality.pt").is_file()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "SMOKE: teacher = the shipped digits teacher" in text
