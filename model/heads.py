"""A server's own part of the model: the layers after the shared encoder, with their thresholds.

Why: one process serves many servers, and a model copy each (90 MB for MiniLM-L6) does not scale.
A server that retrains gets its own copy of the last layers only (for BERT the pooler and the
classifier: 0.6 MB for MiniLM-L6 with 28 labels), trained on its own corrections with the encoder
frozen. In one forward pass the shared encoder runs once for the messages of every server, and each
server's rows then go through its own head: a few small matrix products (``benchmarks/tenancy.py``
has the throughput and the memory per server; ``docs/tenancy.md`` the choice against LoRA).

A head belongs to the base it was trained on: on another base its inputs mean something else, so
it is not applied there (the server is served by the base until it retrains). Which base is told
by a fingerprint of the encoder's weights (:func:`encoder_fingerprint`), not by a name or a path,
which two folders can share.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.func import functional_call

from model.registry import HEAD_FILE, META_FILE, Registry, RegistryError, server_lines, server_root

log = logging.getLogger(__name__)

#: Architectures whose classifier reads the pooler's output, so the pooler is part of the head.
_POOLED = ("bert",)


class HeadError(RuntimeError):
    """A head cannot be saved, loaded or applied; the message says why."""


def head_modules(model: torch.nn.Module) -> tuple[str, ...]:
    """Names of the modules that form the per-server part, in forward order.

    The classification layer (``classifier`` or ``score``); for BERT also its pooler, which only
    the classifier reads and which is the one layer there that still mixes the features.
    """
    names = dict(model.named_modules())
    head = next((n for n in ("classifier", "score") if n in names), None)
    if head is None:
        raise HeadError(f"{type(model).__name__} has no classifier or score layer to train per server")
    pooler = f"{getattr(model, 'base_model_prefix', '')}.pooler"
    if getattr(model.config, "model_type", "") in _POOLED and names.get(pooler) is not None:
        return (pooler, head)
    return (head,)


def head_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The per-server part's parameters, by their names in the whole model."""
    parts = head_modules(model)
    return {name: p.detach() for name, p in model.named_parameters() if name.startswith(tuple(f"{m}." for m in parts))}


def freeze_encoder(model: torch.nn.Module) -> int:
    """Train only the head: every other parameter stops taking gradients. Returns the trainable count."""
    trainable = set(head_state(model))
    for name, p in model.named_parameters():
        p.requires_grad_(name in trainable)
    return sum(p.numel() for name, p in model.named_parameters() if name in trainable)


def encoder_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of the weights a head's input depends on (every parameter outside the head).

    Sampled (shape and the first values of each tensor), so it costs microseconds: any fine-tune of
    the encoder moves those values, and the same weights give the same hash wherever they are loaded.
    Computed on the fp32 weights, before quantization or a move to the GPU.
    """
    own = set(head_state(model))
    digest = hashlib.sha256()
    for name, p in model.named_parameters():
        if name in own:
            continue
        values = p.detach().reshape(-1)[:8].to("cpu", torch.float32)
        digest.update(f"{name}{tuple(p.shape)}".encode())
        digest.update(values.numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Head:
    """One server version: the head's weights, the thresholds tuned with them, and the base they sit on."""

    #: The version in the server's line (``v2``).
    name: str
    #: The version of the base model it was trained on (what ``Classifier.version`` says of that base).
    base: str
    labels: tuple[str, ...]
    state: dict[str, torch.Tensor] = field(repr=False)
    thresholds: tuple[float, ...] | None = None
    guild_id: int | None = None
    #: :func:`encoder_fingerprint` of that base: what decides whether the head fits a served model.
    fingerprint: str = ""

    @property
    def version(self) -> str:
        """What predictions record as their model version: ``v2@v3`` (the server's v2 on base v3)."""
        return f"{self.name}@{self.base}"

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.state.values())

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> Head:
        """The same head with its tensors where (and in the precision) the served model computes."""
        return dataclasses.replace(self, state={k: v.to(device=device, dtype=dtype) for k, v in self.state.items()})

    @classmethod
    def load(cls, folder: str | Path) -> Head:
        """A head saved by :func:`save_head`; HeadError naming the folder if it is missing or damaged."""
        from safetensors.torch import load_file

        folder = Path(folder)
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
            state = load_file(str(folder / HEAD_FILE))
            labels = tuple(meta["labels"])
            base = str(meta["base_version"])
        except Exception as exc:  # noqa: BLE001 - JSON, safetensors and OS errors all mean "cannot be read"
            raise HeadError(f"the server model in {folder} cannot be read ({type(exc).__name__}: {exc})") from None
        thresholds = meta.get("label_thresholds") or None
        return cls(str(meta.get("version") or folder.name), base, labels, state,
                   tuple(float(thresholds.get(lb, 0.5)) for lb in labels) if thresholds else None,
                   meta.get("guild_id"), str(meta.get("base_fingerprint") or ""))


def load_server_heads(models_dir: str | Path, classifier, only: Iterable[int] | None = None) -> dict[int, Head]:
    """``{server id: head}`` for every server line (or those in ``only``) whose current version fits ``classifier``.

    A line trained on another base (or damaged) is left out and logged once here: that server is
    served by the base until it retrains.
    """
    heads: dict[int, Head] = {}
    stale: list[str] = []
    wanted = None if only is None else set(only)
    for guild_id in server_lines(models_dir):
        if wanted is not None and guild_id not in wanted:
            continue
        try:
            current = Registry(server_root(models_dir, guild_id)).current()
            if current is None:
                continue
            heads[guild_id] = classifier.prepare_head(Head.load(current.path))
        except (HeadError, RegistryError) as exc:
            stale.append(f"{guild_id} ({exc})")
    if stale:
        log.warning("%d server model(s) not served, the base serves them until they retrain: %s",
                    len(stale), "; ".join(stale[:10]))
    return heads


def save_head(model: torch.nn.Module, folder: str | Path) -> int:
    """Write the head's weights (safetensors, fp32) into ``folder``; returns the bytes written."""
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in head_state(model).items()}
    path = Path(folder) / HEAD_FILE
    save_file(state, str(path))
    return path.stat().st_size


def load_into(model: torch.nn.Module, head: Head) -> None:
    """Put ``head``'s weights into ``model`` (to continue training a server's line from its current version)."""
    missing = set(head_state(model)) - set(head.state)
    if missing:
        raise HeadError(f"server version {head.name} does not fit this model (it lacks {', '.join(sorted(missing))})")
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, value in head.state.items():
            params[name].copy_(value)


def check_fits(model: torch.nn.Module, head: Head, labels: Sequence[str]) -> None:
    """HeadError unless ``head`` has this model's labels and the shapes of its head."""
    if tuple(labels) != head.labels:
        raise HeadError(f"server version {head.name} has other labels than the model")
    own = {name: tuple(p.shape) for name, p in model.named_parameters() if name in head.state}
    theirs = {name: tuple(t.shape) for name, t in head.state.items()}
    if own != theirs:
        raise HeadError(f"server version {head.name} does not fit this model's head")


class HeadRunner:
    """Applies per-server heads to the rows of one forward pass of the shared model.

    A forward pre-hook on the head's first module keeps its input (the encoder's output), so a
    batch mixing servers runs the encoder once; then each server's rows go through its own
    weights with ``torch.func.functional_call`` (the served module itself is never changed).
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.parts = [(name, model.get_submodule(name)) for name in head_modules(model)]

    @contextlib.contextmanager
    def capture(self) -> Iterator[SimpleNamespace]:
        """Records the head's input during one forward pass, as ``.value`` of what it yields."""
        seen = SimpleNamespace(value=None)
        handle = self.parts[0][1].register_forward_pre_hook(lambda _module, args: setattr(seen, "value", args[0]))
        try:
            yield seen
        finally:
            handle.remove()

    def logits(self, head: Head, features: torch.Tensor) -> torch.Tensor:
        x = features
        for name, module in self.parts:
            prefix = name + "."
            x = functional_call(module, {k[len(prefix):]: v for k, v in head.state.items() if k.startswith(prefix)},
                                (x,))
        return x

