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


def test_the_cluster_benchmark_runs_both_parts_and_writes_its_figures(tmp_path, pg_server):
    """Small: 3,000 rows on each backend, and two bot processes offered 20 msg/s for 3 s."""
    from benchmarks import cluster

    out = tmp_path / "cluster.json"
    assert cluster.main(["--rows", "3000", "--rate", "20", "--seconds", "3", "--budget", "40", "--max-age", "5",
                         "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [row["backend"] for row in result["rows"]] == ["sqlite", "postgresql", "postgresql"]
    assert all(row["insert_rows_per_s"] > 0 and row["server, 90 days ms"] >= 0 for row in result["rows"])
    two = result["cluster"]
    assert two["messages"] == 60 and two["nothing_lost"] and two["reactions"] > 0
    assert two["reactions_per_s_max"] <= 40 + 4 and len(two["loop_lag_p99_ms"]) == 2
