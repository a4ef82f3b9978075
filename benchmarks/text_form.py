"""What chat-aware text buys: the same seed13 recipe trained on ``--text-form chat`` and on ``raw``.

    python benchmarks/text_form.py [--sources all] [--mix-size 16000 --epochs 1] [--score emocontext,...]

Both runs use one mix, one seed and one budget; only the text form differs (model/chat_text.py). For each
scored set the table gives test accuracy in the set's own labels, and how many of its test texts the
tokenizer turns partly into ``[UNK]`` in each form (nearly all of them emoji). Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import write_results  # noqa: E402
from benchmarks.loso import SHARED, held_out_scores  # noqa: E402

DEFAULT_SCORED = "emocontext,isarcasmeval_en,goemotions,dair-emotion"


def unk_share(texts: list[str], tokenizer, form: str) -> float:
    """The share of ``texts`` holding at least one ``[UNK]`` once prepared in ``form``."""
    from model.chat_text import prepare

    unk = tokenizer.unk_token_id
    ids = tokenizer([prepare(t, form) for t in texts], truncation=True, max_length=64)["input_ids"]
    return sum(unk in row for row in ids) / max(len(ids), 1)


def main(argv: list[str] | None = None) -> int:
    from transformers import AutoTokenizer

    from model import sources
    from model.train import minilm_path, run
    from model.train_config import TrainConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", default="all")
    parser.add_argument("--score", default=DEFAULT_SCORED, help="the sets whose test splits are scored")
    parser.add_argument("--data-root", type=Path, default=SHARED)
    parser.add_argument("--mix-size", type=int, default=16000)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-steps", type=int, default=-1)
    parser.add_argument("--limit", type=int, default=0, help="> 0 scores only this many test rows")
    parser.add_argument("--out", type=Path, help="JSON output (default benchmarks/results/text_form.json)")
    args = parser.parse_args(argv)

    scored = sources.choose(args.score)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    workdir = Path(tempfile.mkdtemp(prefix="text-form-"))
    results: dict[str, dict[str, dict]] = {}
    try:
        for form in ("raw", "chat"):
            out = workdir / form
            run(TrainConfig(sources=args.sources, labels="seed13", multi_label=True, data_root=str(args.data_root),
                            mix_size=args.mix_size, epochs=args.epochs, max_steps=args.max_steps, text_form=form,
                            output=str(out)))
            results[form] = {s.name: held_out_scores(str(out), s, args.data_root, limit=args.limit) for s in scored}
            shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows = []
    for source in scored:
        texts = list(sources.dataset(source, "test", args.data_root, limit=args.limit)["text"])
        rows.append({"set": source.name, "test rows": len(texts),
                     "[UNK] raw": round(unk_share(texts, tokenizer, "raw"), 4),
                     "[UNK] chat": round(unk_share(texts, tokenizer, "chat"), 4),
                     "accuracy raw": results["raw"][source.name]["accuracy"],
                     "accuracy chat": results["chat"][source.name]["accuracy"],
                     "F1 raw": results["raw"][source.name]["macro_f1"],
                     "F1 chat": results["chat"][source.name]["macro_f1"]})
    write_results("text_form", rows, {"mix_size": args.mix_size, "epochs": args.epochs, "sources": args.sources},
                  args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
