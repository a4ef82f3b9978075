"""How far a server's head can go on the shared encoder: a linear read-out's ceiling for tenancy (b).

    python benchmarks/readout_ceiling.py --model data/runs/minilm-go28-2ep [--sizes 200 400 1000 2000]

``benchmarks/tenancy.py`` part (b) asks two communities that label the same dair-emotion tweets the opposite
way round to reach 90% agreement on held-out look-alikes (val.txt's joy and sadness tweets) with a
per-server head on the frozen encoder. This measures the best any linear read-out of the frozen features
can do on that task: scikit-learn's logistic regression, joy against sadness (two classes, not the head's 28),
on the base's last-layer CLS vector (what the head reads), its pooler output and the mean of its token
vectors, trained on N tweets (half each, drawn as tenancy.py draws them). A linear head cannot beat it, so
if it stays under 0.90 the target needs a per-server part that reaches into the encoder.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import write_results  # noqa: E402
from benchmarks.tenancy import SHARED, read_rows  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModel, AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="the shared base (a trained model folder)")
    parser.add_argument("--community", type=Path, default=SHARED / "dair-emotion")
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 400, 1000, 2000], help="training tweets")
    parser.add_argument("--out", type=Path, help="JSON output (default benchmarks/results/readout_ceiling.json)")
    args = parser.parse_args(argv)
    rng = random.Random(0)
    train = read_rows(args.community / "train.txt")
    rng.shuffle(train)
    held = read_rows(args.community / "val.txt")
    tok = AutoTokenizer.from_pretrained(args.model)
    encoder = AutoModel.from_pretrained(args.model).eval()

    def features(texts: list[str]) -> dict[str, np.ndarray]:
        out: dict[str, list] = {"CLS (the head's input)": [], "pooler": [], "mean of tokens": []}
        with torch.no_grad():
            for i in range(0, len(texts), 64):
                batch = tok(texts[i:i + 64], padding=True, truncation=True, max_length=128, return_tensors="pt")
                result = encoder(**batch)
                hidden, mask = result.last_hidden_state, batch["attention_mask"].unsqueeze(-1).float()
                out["CLS (the head's input)"].append(hidden[:, 0])
                out["pooler"].append(result.pooler_output if result.pooler_output is not None else hidden[:, 0])
                out["mean of tokens"].append((hidden * mask).sum(1) / mask.sum(1))
        return {k: torch.cat(v).numpy() for k, v in out.items()}

    held_x, held_y = features([t for t, _ in held]), np.array([lb == "joy" for _, lb in held])
    rows = []
    for n in args.sizes:
        chosen = [r for r in train if r[1] == "joy"][:n // 2] + [r for r in train if r[1] == "sadness"][:n // 2]
        x, y = features([t for t, _ in chosen]), np.array([lb == "joy" for _, lb in chosen])
        for kind in x:
            best = max((LogisticRegression(C=c, max_iter=3000).fit(x[kind], y).score(held_x[kind], held_y), c)
                       for c in (0.1, 1.0, 10.0))
            rows.append({"tweets": len(chosen), "features": kind, "held-out accuracy (best C)": round(best[0], 3),
                         "C": best[1]})
    write_results("readout_ceiling", rows, {"model": str(args.model), "held_out": len(held),
                                            "note": "best C chosen on the held-out set: an upper bound"}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
