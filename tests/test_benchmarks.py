"""The GPU script's steps run (on CPU, small): the figures it writes on a GPU come from code CI has run."""

from __future__ import annotations

import json
import sys

from benchmarks import gpu


def test_the_gpu_benchmark_runs_every_step_and_writes_its_figures(tmp_path, monkeypatch):
    out = tmp_path / "gpu.json"
    monkeypatch.setattr(sys, "argv", ["gpu.py", "--device", "cpu", "--quick", "--data", str(tmp_path / "none"),
                                      "--out", str(out)])
    gpu.main()
    result = json.loads(out.read_text())
    whats = [row["what"] for row in result["rows"]]
    assert whats[0].startswith("(1) worker, batch 1")
    assert any(w.startswith("(2) predict(), batch 32 (default)") for w in whats)
    assert any(w.startswith("(2) worker at saturation") for w in whats)
    assert whats[-1].startswith("(3) train")
    assert all(row.get("msg/s", 1) > 0 and row.get("examples/s", 1) > 0 for row in result["rows"])
    assert result["device"] == "cpu" and result["dtype"] == "float32" and set(result["targets"]) == {
        "saturation >= 50,000 msg/s (predict)", "saturation >= 50,000 msg/s (worker)", "training >= 1,500 examples/s"}
