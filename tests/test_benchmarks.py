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


def test_the_tenancy_benchmark_serves_many_servers_heads_and_writes_its_figures(tmp_path, tiny_model_dir):
    from benchmarks import tenancy

    out = tmp_path / "tenancy.json"
    assert tenancy.main(["--model", str(tiny_model_dir), "--skip-learning", "--servers", "1,3", "--messages", "48",
                         "--concurrency", "8", "--repeats", "1", "--threads", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {row["what"]: row for row in result["serving"]["rows"]}
    assert set(rows) == {"one model", "1 servers", "3 servers"} and rows["one model"]["of one model"] == 1.0
    assert all(row["msg/s"] > 0 for row in rows.values())
    memory = result["serving"]["memory"]
    assert memory["servers_loaded"] == 3 and 0 < memory["head_ram_bytes"] <= memory["version_folder_bytes"]
    assert list(result["targets"]) == ["at most 5 MB per server"]  # no 100-server run asked for here
