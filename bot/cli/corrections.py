"""``emotion-machine corrections list|delete|relabel``: the stored corrections and imported examples as data.

One table holds both (``--source discord|shell|import``). ``list`` opens the database read-only;
``delete`` and ``relabel`` change what they name in one transaction, and a bad id or label changes
nothing. A delete chosen by filters alone says how many rows it would delete until ``--yes``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import re
import sys
import unicodedata
from datetime import datetime, timezone

from bot.cli.common import EXIT_OK, EXIT_USAGE, CommandError, settings
from bot.cli.data import model_labels
from bot.store import SOURCES
from model.labels import LABEL_SETS

#: ``list`` shows this many rows unless ``--limit`` says otherwise (0: all).
DEFAULT_LIMIT = 50
#: The text column's width in the table.
TEXT_WIDTH = 60
_COLUMNS = ("id", "source", "server", "label", "guess", "writer", "when", "text")
_FILTERS = ("guild", "label", "source", "since")
# Line breaks, terminal escapes and bidi overrides: what would let a message's text bend the admin's table.
_UNSHOWABLE = re.compile(r"[\u202a-\u202e\u2066-\u2069]")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("corrections", help="list, delete or relabel stored corrections and imported examples",
                       description="Corrections from Discord and the shell, and examples imported from files, "
                                   "as stored for training.")
    cs = c.add_subparsers(dest="corrections_command", required=True, metavar="ACTION")

    q = cs.add_parser("list", parents=[_filters(label_help="only rows with this label (any case)")],
                      help="the newest corrections, one line each")
    q.add_argument("--limit", type=_count, default=DEFAULT_LIMIT,
                   help=f"at most N rows (default {DEFAULT_LIMIT}; 0: all)")
    q.add_argument("--format", choices=["table", "jsonl"], default="table",
                   help="table (text shortened to one line) or jsonl (every field, whole text)")
    q.set_defaults(func=run_list)

    q = cs.add_parser("delete", parents=[_filters(label_help="rows with this label")],
                      help="delete corrections by id, or every one the filters match (with --yes)")
    q.add_argument("ids", nargs="*", type=int, metavar="ID", help="ids from `corrections list`")
    q.add_argument("--yes", action="store_true", help="delete what the filters match (without: only say how many)")
    q.set_defaults(func=run_delete)

    q = cs.add_parser("relabel", parents=[_filters(label_option="--from", label_help="relabel the rows with this "
                                                   "label (with the other filters: a label renamed in bulk)")],
                      help="give corrections another label, by id or by --from LABEL",
                      description="Imported examples that end up with the same text and label merge into one.")
    q.add_argument("ids", nargs="*", type=int, metavar="ID", help="ids from `corrections list`")
    q.add_argument("--to", required=True, metavar="LABEL", help="the new label: one of the model's (EMOTION_MODEL "
                                                                 "or --model), or of --labels")
    q.add_argument("--labels", type=str.lower, choices=list(LABEL_SETS),
                   help="check --to against this label set instead of loading the model")
    q.add_argument("--model", help="model whose labels --to must be one of (default: EMOTION_MODEL)")
    q.set_defaults(func=run_relabel)


def _filters(*, label_option: str = "--label", label_help: str) -> argparse.ArgumentParser:
    """The options that choose rows, shared by the three actions."""
    f = argparse.ArgumentParser(add_help=False)
    f.add_argument("--guild", type=int, metavar="ID", help="only this server's corrections")
    f.add_argument(label_option, dest="label", metavar="LABEL", help=label_help)
    f.add_argument("--source", choices=SOURCES, help="where the rows came from")
    f.add_argument("--imported", dest="source", action="store_const", const="import", help="same as --source import")
    f.add_argument("--since", type=_when, metavar="WHEN", help="only rows stored at or after this unix time or "
                                                               "UTC date (2024-05-01, 2024-05-01T12:00)")
    f.add_argument("--db", metavar="PATH", help="database file (default: EMOTION_DB)")
    return f


def _when(text: str) -> float:
    """A unix time or an ISO date/time (UTC unless it says otherwise), for ``--since``."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a unix time or a date such as 2024-05-01, got {text!r}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def _filter_values(args: argparse.Namespace) -> dict:
    return {"guild_id": args.guild, "label": args.label, "source": args.source, "since": args.since}


def _described(args: argparse.Namespace, filters: tuple[str, ...] = _FILTERS) -> str:
    """The filters given, as the command line spelt them (for messages)."""
    return " ".join(f"--{name} {getattr(args, name)}" for name in filters if getattr(args, name) is not None)


def _session(args: argparse.Namespace, work, *, read_only: bool = False):
    """Run ``work(store)`` on the database; a store failure or a bad id/label is one error line."""
    from bot.store import StoreError, open_store

    async def go():
        store = await open_store(settings(args).db_path, read_only=read_only)
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except (StoreError, ValueError) as exc:
        raise CommandError(str(exc)) from None


# --------------------------------------------------------------------------- list


def run_list(args: argparse.Namespace) -> int:
    limit = args.limit or None
    rows = _session(args, lambda store: store.list_corrections(
        **_filter_values(args), limit=None if limit is None else limit + 1), read_only=True)
    more = limit is not None and len(rows) > limit
    rows = rows[:limit]
    if args.format == "jsonl":
        for row in rows:
            print(json.dumps(dataclasses.asdict(row), ensure_ascii=False))
    else:
        print(table(rows))
    if more:
        print(f"showing the newest {limit}; more match (--limit 0 shows them all)", file=sys.stderr)
    return EXIT_OK


def one_line(text: str, width: int | None = None) -> str:
    """``text`` on one line, without control characters, cut to ``width`` with an ellipsis."""
    shown = "".join(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in text)
    shown = " ".join(_UNSHOWABLE.sub(" ", shown).split())
    return shown if width is None or len(shown) <= width else shown[:width - 1] + "…"


def _cells(row) -> tuple[str, ...]:
    writer = "-" if row.by_author is None else ("yes" if row.by_author else "no")
    when = datetime.fromtimestamp(row.created_at, timezone.utc).strftime("%Y-%m-%d %H:%M")
    return (str(row.id), row.source, "-" if row.guild_id is None else str(row.guild_id), one_line(row.label),
            one_line(row.predicted_label or "-"), writer, when, one_line(row.text, TEXT_WIDTH))


def table(rows) -> str:
    """The rows as aligned columns under a header (the text column last, not padded)."""
    lines = [_COLUMNS, *map(_cells, rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(_COLUMNS) - 1)]
    return "\n".join("  ".join([*(cell.ljust(w) for cell, w in zip(line, widths)), line[-1]]) for line in lines)


# --------------------------------------------------------------------------- delete and relabel


def _chosen_ids(args: argparse.Namespace, action: str, filters: str) -> list[int] | None:
    """The ids given, or None when the filters choose; a usage error for neither or both."""
    filtered = any(getattr(args, name) is not None for name in _FILTERS)
    if args.ids and filtered:
        raise CommandError(f"{action} takes ids or filters, not both", EXIT_USAGE)
    if not args.ids and not filtered:
        raise CommandError(f"say which corrections to {action}: ids or filters ({filters})", EXIT_USAGE)
    return args.ids or None


def _plural(n: int) -> str:
    return f"{n} correction{'' if n == 1 else 's'}"


def run_delete(args: argparse.Namespace) -> int:
    ids = _chosen_ids(args, "delete", "--guild, --label, --source, --imported, --since")

    async def work(store) -> int:
        chosen = ids if ids is not None else [r.id for r in await store.list_corrections(**_filter_values(args))]
        if ids is None and not args.yes:
            raise CommandError(f"would delete {_plural(len(chosen))} matching {_described(args)}; nothing deleted: "
                               "add --yes to delete them", EXIT_USAGE)
        return await store.delete_corrections(chosen)

    print(f"deleted {_plural(_session(args, work))}")
    return EXIT_OK


def _new_label(args: argparse.Namespace) -> str:
    """``--to`` in its canonical spelling among the labels it must be one of; CommandError listing them."""
    if args.labels:
        labels, whose = LABEL_SETS[args.labels], f"the {args.labels} labels"
    else:
        labels, whose = model_labels(settings(args), "or check --to against a label set with --labels"), \
            "the model's labels"
    wanted = args.to.strip().lower()
    for label in labels:
        if label.lower() == wanted:
            return label
    raise CommandError(f"{one_line(args.to, 50)!r} is not one of {whose}: {', '.join(labels)}")


def run_relabel(args: argparse.Namespace) -> int:
    ids = _chosen_ids(args, "relabel", "--from LABEL, with --guild, --source, --imported, --since")
    if ids is None and args.label is None:
        raise CommandError("relabel by filters needs --from LABEL (the label to replace)", EXIT_USAGE)
    label = _new_label(args)

    async def work(store):
        chosen = ids if ids is not None else [r.id for r in await store.list_corrections(**_filter_values(args))]
        if not chosen:
            others = _described(args, ("guild", "source", "since"))
            raise CommandError(f"no corrections labelled {args.label!r}{' with ' + others if others else ''}; "
                               "nothing changed")
        return await store.relabel_corrections(chosen, label)

    counts = _session(args, work)
    extra = [f"{counts.merged} merged into the same text already imported as {label!r}"] if counts.merged else []
    extra += [f"{counts.unchanged} had it already"] if counts.unchanged else []
    print(f"relabelled {_plural(counts.relabelled)} as {label!r}" + (f" ({', '.join(extra)})" if extra else ""))
    return EXIT_OK
