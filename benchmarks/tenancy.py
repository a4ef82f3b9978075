"""Many servers, one process: per-server heads on a shared encoder, measured (issue #14).

(a) Serving: the inference worker at saturation (1,024 callers, 2,000 GoEmotions dev texts, int8 on
    CPU as the bot serves) with every message from one base model, then spread over 1, 10 and 100
    servers that each have a head of their own (``model/heads.py``), in one run, alternating, each
    configuration ``--repeats`` times (the median is reported). Heads are the served base's head
    with noise added, written and loaded the way a server's version is: a trained head costs the
    same to apply. Memory per server: the head's tensors in RAM and its folder on disk.
    Target: 100 servers at least 0.8 times one model's throughput, at most 5 MB per server.

(b) Isolation in learning: two communities correct the same texts the opposite way round
    (dair-emotion tweets: A keeps joy as joy and sadness as sadness, B calls joy tweets sadness and
    sadness tweets joy). Each server's ``/retrain`` runs the bot's own flow (RetrainingService, its
    child process, gate and replay) on its own corrections in one shared database. Measured: each
    server's agreement with its own rule on held-out look-alikes (the community's val.txt joy and
    sadness tweets), and how far B's retrain moves A's predictions (and the other way round).
    Target: at least 90% agreement each; neither moves the other's by more than 1 point.

(c) With ``--lora`` (needs PEFT: ``EXTRAS=bench bash scripts/setup``): LoRA adapters per server, PEFT's
    mixed-adapter batches, against heads, in one run (fp32: PEFT does not wrap int8 layers).

    python benchmarks/tenancy.py --model data/runs/minilm-go28-2ep [--lora]

Prints the tables and writes ``benchmarks/results/tenancy.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.common import DEFAULT_DATA, RESULTS, LoopLag, chat_texts, minilm_folder, write_results  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
A, B = 1001, 2002


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, help="a GoEmotions-trained model folder (needed for part b)")
    p.add_argument("--servers", default="1,10,100", help="servers with a head of their own, comma-separated")
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--community", type=Path, default=SHARED / "dair-emotion")
    p.add_argument("--corrections", type=int, default=200, help="corrections per community (half joy, half sadness)")
    p.add_argument("--server-lr", type=float, help="EMOTION_SERVER_LR for part (b) (default: the bot's)")
    p.add_argument("--epochs", type=float, help="EMOTION_FINETUNE_EPOCHS for part (b) (default: the bot's)")
    p.add_argument("--mix", type=float, help="EMOTION_FINETUNE_MIX for part (b) (default: the bot's)")
    p.add_argument("--replay-ratio", type=float, help="EMOTION_REPLAY_RATIO for part (b) (default: the bot's)")
    p.add_argument("--skip-serving", action="store_true")
    p.add_argument("--skip-learning", action="store_true")
    p.add_argument("--lora", action="store_true", help="also measure LoRA adapters per server (needs peft)")
    p.add_argument("--out", type=Path, default=RESULTS / "tenancy.json")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- (a) serving


def make_lines(models_dir: Path, clf, folder: Path, n: int, seed: int = 0) -> None:
    """``n`` server lines whose current version is the base's head plus noise (saved as /retrain saves one)."""
    import torch

    from model.classifier import Classifier
    from model.heads import head_state, save_head
    from model.registry import Registry, server_root

    model = Classifier.load(folder, device="cpu", quantize="none").model
    original = {k: v.clone() for k, v in head_state(model).items()}
    generator = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    for guild in range(n):
        with torch.no_grad():
            for name, value in original.items():
                params[name].copy_(value + 0.01 * torch.randn(value.shape, generator=generator))
        line = Registry(server_root(models_dir, guild))
        _, tmp = line.allocate()
        size = save_head(model, tmp)
        line.set_current(line.commit(tmp, {"scope": "server", "guild_id": guild, "base_version": clf.version,
                                           "base_fingerprint": clf.fingerprint, "labels": list(clf.labels),
                                           "head_bytes": size}).name)


async def saturate(worker, texts: list[str], keys: list[int | None], concurrency: int) -> dict:
    work = list(zip(texts, keys))

    async def client() -> None:
        while work:
            text, key = work.pop()
            await worker.classify(text, key)

    with LoopLag() as lag:
        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    return {"msg/s": len(texts) / seconds, "loop lag p99 ms": lag.p(99)}


def serving(args: argparse.Namespace, folder: Path, weights: str) -> tuple[list[dict], dict]:
    import torch

    from model.classifier import Classifier
    from model.heads import HEAD_FILE, load_server_heads
    from model.registry import server_root
    from model.worker import InferenceWorker

    torch.set_num_threads(args.threads)
    clf = Classifier.load(folder, device="auto", quantize="auto")
    texts, source = chat_texts(args.messages, DEFAULT_DATA)
    counts = [int(s) for s in args.servers.split(",")]
    rng = random.Random(0)
    results: dict[str, list[dict]] = {"one model": [], **{f"{n} servers": [] for n in counts}}
    memory: dict = {}
    with tempfile.TemporaryDirectory(prefix="emotion-tenancy-") as tmp:
        models_dir = Path(tmp)
        make_lines(models_dir, clf, folder, max(counts))
        t0 = time.perf_counter()
        all_heads = load_server_heads(models_dir, clf)
        load_s = time.perf_counter() - t0
        one = next(iter(all_heads.values()))
        disk = sum(p.stat().st_size for p in (server_root(models_dir, 0) / "v1").iterdir())
        memory = {"head_ram_bytes": one.nbytes, "version_folder_bytes": disk,
                  "head_file_bytes": (server_root(models_dir, 0) / "v1" / HEAD_FILE).stat().st_size,
                  "load_s_per_server": load_s / len(all_heads), "servers_loaded": len(all_heads)}
        worker = InferenceWorker(clf, torch_threads=args.threads).start()

        async def run_all() -> None:
            await worker.classify_many(texts[:64])  # warm up
            for _ in range(args.repeats):
                worker.swap(clf, {})
                results["one model"].append(await saturate(worker, texts, [None] * len(texts), args.concurrency))
                for n in counts:
                    worker.swap(clf, {g: all_heads[g] for g in range(n)})
                    keys = [rng.randrange(n) for _ in texts]
                    results[f"{n} servers"].append(await saturate(worker, texts, keys, args.concurrency))
            await worker.close()

        asyncio.run(run_all())
    base = statistics.median(r["msg/s"] for r in results["one model"])
    rows = []
    for what, runs in results.items():
        rate = statistics.median(r["msg/s"] for r in runs)
        rows.append({"what": what, "msg/s": rate, "of one model": rate / base,
                     "runs": ", ".join(f"{r['msg/s']:.0f}" for r in runs),
                     "loop lag p99 ms": max(r["loop lag p99 ms"] for r in runs)})
    return rows, {"texts": source, "weights": weights, "precision": "int8" if clf.quantized else clf.dtype,
                  "memory": memory}


# --------------------------------------------------------------------------- (c) heads against LoRA


def lora(args: argparse.Namespace, folder: Path) -> tuple[list[dict], dict]:
    """The alternative measured: one LoRA adapter per server (PEFT, r=8 on query and value, the classifier as
    ``modules_to_save``), servers mixed in each batch with ``adapter_names``, against heads, in one run.

    fp32 for both: PEFT's LoRA layers wrap ``nn.Linear``, not the dynamically quantized Linear the bot serves
    on CPU, so LoRA gives int8 up; the int8 row with heads is what the bot does.
    """
    import torch
    from peft import LoraConfig, get_peft_model

    from model.classifier import Classifier

    torch.set_num_threads(args.threads)
    texts, _ = chat_texts(args.messages, DEFAULT_DATA)
    n = max(int(x) for x in args.servers.split(","))
    rng = random.Random(1)
    keys = [rng.randrange(n) for _ in texts]
    runs: dict[str, list[float]] = {}
    steps: list[tuple[str, object]] = []

    def timed(what: str, fn) -> None:
        steps.append((what, fn))

    fp32 = Classifier.load(folder, device="cpu", quantize="none")
    int8 = Classifier.load(folder, device="cpu", quantize="int8")
    with tempfile.TemporaryDirectory(prefix="emotion-tenancy-lora-") as tmp:
        from model.heads import load_server_heads

        make_lines(Path(tmp), fp32, folder, n)
        heads32 = load_server_heads(Path(tmp), fp32)
        heads8 = load_server_heads(Path(tmp), int8)
    timed("fp32, one model", lambda t: fp32.predict(t))
    timed(f"fp32, {n} servers' heads", lambda t: fp32.predict(t, heads=[heads32[keys[i]] for i in range(len(t))]))
    timed(f"int8, {n} servers' heads (what the bot serves)",
          lambda t: int8.predict(t, heads=[heads8[keys[i]] for i in range(len(t))]))

    model = Classifier.load(folder, device="cpu", quantize="none").model
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"], task_type="SEQ_CLS")
    peft_model = get_peft_model(model, config, adapter_name="s0")
    for i in range(1, n):
        peft_model.add_adapter(f"s{i}", config)
    with torch.no_grad():  # lora_B starts at zero (a no-op); make each adapter do something, as a trained one does
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.01)
    peft_model.eval()
    per_adapter = sum(p.numel() * p.element_size() for name, p in peft_model.named_parameters()
                      if ".s0." in name or name.endswith(".s0"))
    tokenizer = fp32.tokenizer

    @torch.inference_mode()
    def run_lora(batch_texts: list[str]) -> None:
        ids = tokenizer(batch_texts, truncation=True, max_length=fp32.max_length)["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), fp32.batch_size):
            chunk = order[start:start + fp32.batch_size]
            enc = tokenizer.pad({"input_ids": [ids[i] for i in chunk]}, return_tensors="pt")
            peft_model(**enc, adapter_names=[f"s{keys[i]}" for i in chunk])

    timed(f"fp32, {n} servers' LoRA adapters (PEFT mixed batch)", run_lora)
    for _what, fn in steps:
        fn(texts[:64])  # warm up
    for _ in range(args.repeats):  # alternating, so a slow moment of the machine hits every row alike
        for what, fn in steps:
            start = time.perf_counter()
            fn(texts)
            runs.setdefault(what, []).append(len(texts) / (time.perf_counter() - start))
    rows = [{"what": what, "msg/s": statistics.median(r), "runs": ", ".join(f"{x:.0f}" for x in r)}
            for what, r in runs.items()]
    one = rows[0]["msg/s"]
    for row in rows:
        row["of fp32 one model"] = row["msg/s"] / one
    head_bytes = next(iter(heads32.values())).nbytes
    return rows, {"lora_bytes_per_server": per_adapter, "head_bytes_per_server": head_bytes, "servers": n}


# --------------------------------------------------------------------------- (b) isolation in learning


def read_rows(path: Path, keep=("joy", "sadness")) -> list[tuple[str, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text, _, label = line.rpartition(";")
        if label.strip() in keep and text.strip():
            rows.append((text.strip(), label.strip()))
    return rows


SWAP = {"joy": "sadness", "sadness": "joy"}


async def retrain(service, guild: int):
    from bot.services.common import Actor
    from bot.services.retraining import TrainingOverrides

    admin = Actor(user_id=guild, guild_id=guild, can_manage=True, name=f"admin of {guild}")
    run = await service.prepare(admin, guild_id=guild, overrides=TrainingOverrides(save_refused=True))
    run.start()
    async for _ in run.events():
        pass
    return await run.finish()


def learning(args: argparse.Namespace) -> tuple[list[dict], dict]:
    from dataclasses import replace

    from bot.services.retraining import RetrainingService
    from bot.settings import Settings
    from bot.store import Correction, Store
    from model.classifier import Classifier
    from model.heads import Head

    model_dir = str(args.model.resolve())
    rng = random.Random(0)
    train = read_rows(args.community / "train.txt")
    rng.shuffle(train)
    half = args.corrections // 2
    chosen = [r for r in train if r[1] == "joy"][:half] + [r for r in train if r[1] == "sadness"][:half]
    held = read_rows(args.community / "val.txt")
    probe = [t for t, _ in read_rows(args.community / "val.txt", keep=("joy", "sadness", "anger", "fear", "love",
                                                                        "surprise"))]
    rules = {A: lambda lb: lb, B: lambda lb: SWAP[lb]}

    with tempfile.TemporaryDirectory(prefix="emotion-tenancy-learn-") as tmp:
        work = Path(tmp)
        knobs = {k: v for k, v in (("server_lr", args.server_lr), ("finetune_epochs", args.epochs),
                                   ("finetune_mix", args.mix), ("replay_ratio", args.replay_ratio)) if v is not None}
        settings = replace(Settings(), model=model_dir, models_dir=work / "models", db_path=work / "emotion.db",
                           training_threads=args.threads, **knobs)

        async def go(guild: int):
            """Store the community's corrections in the shared database, then run its server's /retrain."""
            store = await Store.open(settings.db_path)
            try:
                for i, (text, label) in enumerate(chosen):
                    await store.add_correction(Correction(text, rules[guild](label), guild_id=guild,
                                                          channel_id=guild + 1, message_id=guild * 100_000 + i,
                                                          author_id=guild * 100_000 + i, corrector_id=7))
                t0 = time.perf_counter()
                outcome = await retrain(RetrainingService(settings, store), guild)
                return outcome.result, time.perf_counter() - t0
            finally:
                await store.close()

        def served_head(guild: int):
            """The server's candidate (saved even when the gate refused it: the table says which)."""
            return clf.prepare_head(Head.load(results[guild][0].path))

        clf = Classifier.load(model_dir, device="cpu", quantize="auto")
        texts = [t for t, _ in held]
        base_labels = [p.label for p in clf.predict(texts)]
        probe_base = [p.label for p in clf.predict(probe)]
        results = {A: asyncio.run(go(A))}
        a_first = [p.label for p in clf.predict(probe, heads=[served_head(A)] * len(probe))]  # before B exists
        results[B] = asyncio.run(go(B))
        heads = {g: served_head(g) for g in (A, B)}  # A's as it is served after B's corrections and retrain
        rows = []
        predictions = {g: [p.label for p in clf.predict(texts, heads=[heads[g]] * len(texts))] for g in (A, B)}
        for guild, name in ((A, "A (joy is joy)"), (B, "B (joy is sadness)")):
            rule = rules[guild]
            agree = sum(p == rule(lb) for p, (_, lb) in zip(predictions[guild], held)) / len(held)
            base_agree = sum(p == rule(lb) for p, (_, lb) in zip(base_labels, held)) / len(held)
            result, seconds = results[guild]
            rows.append({"community": name, "corrections": len(chosen), "deployed": "yes" if result.deployed else "no",
                         "agreement before": base_agree, "agreement after": agree, "held-out": len(held),
                         "train s": seconds, "head KB": heads[guild].nbytes / 1024})
        # B's retrain and B's messages in the same batches move nothing of A's; A's messages nothing of B's
        mixed = clf.predict(probe, heads=[heads[A] if i % 2 == 0 else heads[B] for i in range(len(probe))])
        b_alone = [p.label for p in clf.predict(probe, heads=[heads[B]] * len(probe))]
        evens, odds = range(0, len(probe), 2), range(1, len(probe), 2)
        moved_a = sum(a_first[i] != mixed[i].label for i in evens) / len(evens)
        moved_b = sum(b_alone[i] != mixed[i].label for i in odds) / len(odds)
        base_moved = sum(x != y for x, y in zip(probe_base, (p.label for p in clf.predict(probe)))) / len(probe)
        extra = {"gate": {str(g): results[g][0].reason for g in (A, B)},
                 "moved_A_by_B_points": moved_a * 100, "moved_B_by_A_points": moved_b * 100,
                 "moved_base_points": base_moved * 100, "probe_texts": len(probe),
                 "line_files": {str(g): sorted(p.name for p in Path(results[g][0].path).iterdir()) for g in (A, B)}}
    return rows, extra


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(argv)
    from model.labels import GOEMOTIONS

    out: dict = {}
    table: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            folder, weights = args.model, f"trained model {args.model}"
        else:
            folder, weights = minilm_folder(Path(tmp) / "minilm", GOEMOTIONS)
        if not args.skip_serving:
            rows, extra = serving(args, Path(folder), weights)
            print(f"(a) serving: {weights}; {extra['texts']}; {extra['precision']}")
            table += rows
            out["serving"] = {"rows": rows, **extra}
            for row in rows:
                print(f"    {row['what']:<12} {row['msg/s']:7.1f} msg/s  {row['of one model']:.2f} of one model  "
                      f"(runs {row['runs']}; loop lag p99 {row['loop lag p99 ms']:.1f} ms)")
            memory = extra["memory"]
            print(f"    memory per server: {memory['head_ram_bytes'] / 1e6:.2f} MB in RAM, "
                  f"{memory['version_folder_bytes'] / 1e6:.2f} MB on disk; "
                  f"load {memory['load_s_per_server'] * 1000:.1f} ms each")
        if args.lora:
            rows, extra = lora(args, Path(folder))
            print(f"\n(c) heads against LoRA, {extra['servers']} servers mixed in every batch:")
            write_results("tenancy-lora", rows, extra, args.out.with_name("tenancy-lora.json"))
            print(f"    per server: head {extra['head_bytes_per_server'] / 1e6:.2f} MB, "
                  f"LoRA adapter {extra['lora_bytes_per_server'] / 1e6:.2f} MB")
            out["lora"] = {"rows": rows, **extra}
    if not args.skip_learning:
        if not args.model or not args.community.is_dir():
            print("(b) skipped: it needs --model (a GoEmotions-trained folder) and the dair-emotion folder")
        else:
            rows, extra = learning(args)
            out["learning"] = {"rows": rows, **extra}
            print("\n(b) two communities, opposite corrections:")
            for row in rows:
                print("    " + json.dumps(row, default=str))
            for guild, reason in extra["gate"].items():
                print(f"    gate, server {guild}: {reason}")
            print(f"    B's head moved A's predictions by {extra['moved_A_by_B_points']:.2f} points, "
                  f"A's moved B's by {extra['moved_B_by_A_points']:.2f}, the base by {extra['moved_base_points']:.2f}")
    targets = {}
    if "serving" in out:
        rows = {r["what"]: r for r in out["serving"]["rows"]}
        hundred = rows.get("100 servers")
        if hundred:
            targets["100 servers at least 0.8 of one model"] = (hundred["of one model"] >= 0.8,
                                                                f"{hundred['of one model']:.2f}")
        mb = out["serving"]["memory"]["version_folder_bytes"] / 1e6
        targets["at most 5 MB per server"] = (mb <= 5, f"{mb:.2f} MB on disk")
    if "learning" in out:
        worst = min(r["agreement after"] for r in out["learning"]["rows"])
        targets["each community at least 90% agreement"] = (worst >= 0.9, f"lowest {worst:.3f}")
        moved = max(out["learning"]["moved_A_by_B_points"], out["learning"]["moved_B_by_A_points"])
        targets["neither moves the other by more than 1 point"] = (moved <= 1, f"{moved:.2f} points")
    write_results("tenancy", table or out.get("learning", {}).get("rows", []),
                  {**out, "targets": targets}, args.out)
    for name, (ok, detail) in targets.items():
        print(f"{'PASS' if ok else 'MISS'} {name}: {detail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
