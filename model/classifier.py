"""Load an emotion classifier and predict with it.

One object owns a model, its tokenizer and its device. ``predict`` is synchronous and
CPU/GPU-bound: the bot calls it only from :mod:`model.worker`'s thread, the CLI directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from model.chat_text import prepare, text_form
from model.defaults import DEFAULT_MODEL, MAX_LENGTH  # noqa: F401 - DEFAULT_MODEL re-exported for older callers
from model.heads import Head, HeadError, HeadRunner, check_fits, encoder_fingerprint, head_modules
from model.labels import labels_from_config
from model.metrics import relative_scores

log = logging.getLogger(__name__)



class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says why and names the fix."""


@dataclass(frozen=True, slots=True)
class Prediction:
    """The top label, its probability, and the full distribution over the model's labels."""

    label: str
    score: float
    scores: dict[str, float] = field(repr=False)
    #: Labels above their threshold (multi-label models); for single-label models just ``label``.
    labels: tuple[str, ...] = ()
    version: str = ""
    #: Every label, the shown one first (multi-label: by distance above its threshold); empty: by probability.
    ranking: tuple[str, ...] = field(default=(), repr=False)

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` first labels in the order the label was chosen by, with their probabilities."""
        if self.ranking:
            return [(lb, self.scores[lb]) for lb in self.ranking[:k]]
        return sorted(self.scores.items(), key=lambda kv: kv[1], reverse=True)[:k]


def resolve_device(setting: str | None = None) -> torch.device:
    """``auto``/empty → CUDA when present, else CPU; otherwise exactly what was asked (``cuda:1``)."""
    if not setting or setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(setting)
    except RuntimeError as exc:
        raise ModelLoadError(f"unknown device {setting!r}: use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {setting!r} was asked for but CUDA is not available: "
                                 "set the device to cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ModelLoadError(f"device {setting!r} does not exist: "
                                 f"this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def _explain_load_failure(source: str, exc: BaseException) -> ModelLoadError:
    path = Path(source).expanduser()
    if path.is_dir():
        missing = [n for n in ("config.json",) if not (path / n).exists()]
        what = f"missing {', '.join(missing)}" if missing else f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        return ModelLoadError(
            f"model folder {str(path)!r} is incomplete or corrupt ({what}). "
            "Fix: point EMOTION_MODEL at a folder written by save_pretrained, or re-run training to write it again.")
    if source.startswith((".", "/", "~")):
        return ModelLoadError(
            f"model folder {source!r} does not exist. Fix: set EMOTION_MODEL to an existing folder "
            "written by save_pretrained, or to a Hugging Face hub id.")
    return ModelLoadError(
        f"could not load model {source!r} from the Hugging Face hub ({type(exc).__name__}). "
        "If this machine is offline, set EMOTION_MODEL to a local folder written by save_pretrained "
        "(see README, 'Running offline').")


#: What a folder needs for its tokenizer: any one of these (a BPE vocab.json needs merges.txt too).
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")
NO_LABELS = ("this model has no emotion labels; fine-tune it with `emotion-machine train` or point "
             "EMOTION_MODEL at a trained folder")
#: How long the hub may take to answer before it counts as unreachable (DNS and proxies included).
HUB_PROBE_TIMEOUT_S = 5.0
_HEAD_PREFIXES = ("classifier.", "score.")
_HEAD_MODULES = tuple(p.rstrip(".") for p in _HEAD_PREFIXES)  # module names (weights' keys end in .weight)


def _check_folder(path: Path) -> None:
    """Refuse a folder that would load but predict nonsense: no config, no tokenizer files."""
    if not (path / "config.json").is_file():
        raise _explain_load_failure(str(path), FileNotFoundError("config.json"))
    if not any((path / n).is_file() for n in TOKENIZER_FILES):
        raise ModelLoadError(
            f"model folder {str(path)!r} has no tokenizer files (missing tokenizer.json or vocab.txt, "
            f"or one of {', '.join(TOKENIZER_FILES[2:])}); without them transformers falls back to a "
            "tokenizer that knows no words. Fix: copy the tokenizer files from the model it was trained from, "
            "or save the tokenizer into the folder with save_pretrained.")


def _check_labels(name: str, id2label) -> None:
    try:
        labels_from_config(id2label)
    except ValueError as exc:
        raise ModelLoadError(f"{NO_LABELS} ({name}: {exc})") from None


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE as the hub client read it at import, or as the environment says now."""
    from huggingface_hub import constants

    now = os.environ.get("HF_HUB_OFFLINE", "") or os.environ.get("TRANSFORMERS_OFFLINE", "")
    return bool(constants.HF_HUB_OFFLINE) or now.strip().upper() in ("1", "ON", "YES", "TRUE")


def _download_fix(repo_id: str) -> str:
    folder = f"models/{repo_id.rsplit('/', 1)[-1]}"
    return (f"Fix: on a machine with internet run `hf download {repo_id} --local-dir {folder}` (`hf` is in the "
            f"venv), copy that folder here and set EMOTION_MODEL={folder} (README, 'Running offline').")


def _hub_options(repo_id: str) -> dict:
    """``from_pretrained`` options for a hub id, after a quick look at the cache and the hub.

    Left to itself the hub client retries for about 50 s before failing (twice: tokenizer, then
    model). Here an unreachable hub costs at most :data:`HUB_PROBE_TIMEOUT_S`: a cached model loads
    from the cache, an uncached one is one :class:`ModelLoadError`.
    """
    from huggingface_hub import try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    if _hub_offline():
        if cached:
            return {"local_files_only": True}
        raise ModelLoadError(f"HF_HUB_OFFLINE is set and {repo_id!r} is not in the local cache of the Hugging Face "
                             f"hub. {_download_fix(repo_id)}")
    problem = _probe_hub(repo_id)
    if problem is None:
        return {}
    if cached:
        log.warning("the Hugging Face hub is unreachable (%s); loading %s from the local cache", problem, repo_id)
        return {"local_files_only": True}
    raise ModelLoadError(f"could not reach the Hugging Face hub for {repo_id!r} ({problem}), and it is not in the "
                         f"local cache. {_download_fix(repo_id)}")


def _probe_hub(repo_id: str) -> str | None:
    """None when the hub answers for ``repo_id``; else why not. Bounded in wall time, DNS included."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    outcome: list[BaseException | None] = []

    def probe() -> None:
        try:
            HfApi().model_info(repo_id, timeout=HUB_PROBE_TIMEOUT_S)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome.append(exc)

    thread = threading.Thread(target=probe, name="hub-probe", daemon=True)
    thread.start()
    thread.join(HUB_PROBE_TIMEOUT_S + 0.5)
    if not outcome:
        return f"no answer within {HUB_PROBE_TIMEOUT_S:g} s"
    exc = outcome[0]
    if exc is None:
        return None
    if isinstance(exc, RepositoryNotFoundError):
        raise ModelLoadError(f"there is no model {repo_id!r} on the Hugging Face hub (or it is private): check "
                             "EMOTION_MODEL's spelling, or log in with `hf auth login`.") from None
    if isinstance(exc, GatedRepoError):
        raise ModelLoadError(f"{repo_id!r} is gated on the Hugging Face hub: accept its terms on the model's page "
                             "and log in with `hf auth login`.") from None
    if isinstance(exc, HfHubHTTPError) and getattr(exc.response, "status_code", 500) < 500:
        return None  # the hub answered: let from_pretrained say what it thinks
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No load report or warnings while loading: what matters is checked here and said once."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(level)


def _load_pretrained(name: str, options: dict) -> tuple:
    """Config (labels checked first), tokenizer and weights; a model without its trained head is refused."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    try:
        with _quiet_transformers():
            config = AutoConfig.from_pretrained(name, **options)
            _check_labels(name, getattr(config, "id2label", None))
            tokenizer = AutoTokenizer.from_pretrained(name, **options)
            model, info = AutoModelForSequenceClassification.from_pretrained(
                name, config=config, output_loading_info=True, **options)
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors, tokenizers and OS errors all mean "cannot load"
        raise _explain_load_failure(name, exc) from None
    head = sorted(k for k in info.get("missing_keys", ()) if str(k).startswith(_HEAD_PREFIXES))
    if head:
        raise ModelLoadError(
            f"model {name!r} has no trained classification head (its weights lack {', '.join(head)}), so it would "
            f"predict at random. {NO_LABELS}.")
    return tokenizer, model


QUANTIZE_CHOICES = ("auto", "int8", "none")
CPU_BATCH = 32
CUDA_BATCH = 512


def _quantize_int8(model: torch.nn.Module, *, keep_fp32: Sequence[str] = (), per_channel: bool = False
                   ) -> torch.nn.Module:
    """Dynamic int8 for the Linear layers: about twice the CPU throughput of fp32 for BERT.

    ``keep_fp32``: name prefixes of Linear layers left in fp32; ``per_channel``: one weight scale
    per output row instead of one per matrix. The bot uses both (the classification head in fp32,
    per-channel weights elsewhere): on a trained 28-label MiniLM that costs 0.2 point of GoEmotions
    test macro-F1 where one scale per matrix cost 0.6 (benchmarks/README.md). ``torch.ao``
    quantization is deprecated upstream; where it is gone we keep fp32.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

            qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
            spec = {name: qconfig for name, m in model.named_modules()
                    if isinstance(m, torch.nn.Linear) and not name.startswith(tuple(keep_fp32))}
            return quantize_dynamic(model, spec, dtype=torch.qint8)
    except Exception as exc:  # noqa: BLE001 - an optimisation, never a reason to fail loading
        log.warning("int8 quantization unavailable (%s); using fp32", exc)
        return model


def _fingerprint(model) -> str:
    try:
        return encoder_fingerprint(model)
    except HeadError:
        return ""


def _head_names(model) -> tuple[str, ...]:
    try:
        return head_modules(model)
    except HeadError:
        return _HEAD_MODULES


def _version_from_metadata(folder: Path) -> str:
    """The registry's version name from ``emotion_machine.json``; the folder name if it is missing or bad."""
    try:
        meta = json.loads((folder / "emotion_machine.json").read_text(encoding="utf-8"))
        return str(meta.get("version") or folder.name)
    except (OSError, ValueError, AttributeError):
        return folder.name


class Classifier:
    """A sequence-classification model ready for inference."""

    def __init__(self, model, tokenizer, *, device: torch.device | str | None = None,
                 max_length: int = MAX_LENGTH, version: str = "", source: str = "",
                 quantize: str = "none") -> None:
        if quantize not in QUANTIZE_CHOICES:
            raise ValueError(f"quantize must be one of {', '.join(QUANTIZE_CHOICES)}, got {quantize!r}")
        self.labels = labels_from_config(getattr(model.config, "id2label", None))
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.multi_label = getattr(model.config, "problem_type", None) == "multi_label_classification"
        thresholds = getattr(model.config, "label_thresholds", None) or {}
        self.thresholds = torch.tensor([float(thresholds.get(lb, 0.5)) for lb in self.labels])
        self.max_length = max_length
        #: How texts are prepared for this model (model/chat_text.py): the form it was trained on.
        self.text_form = text_form(model.config)
        self.version = version or source
        self.source = source
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        model.eval()
        #: Which weights these are, for the servers' heads trained on them (model/heads.py).
        self.fingerprint = _fingerprint(model)
        self.quantized = False
        self.dtype = "float32"
        #: Texts per forward pass: small on CPU (latency grows with it, throughput barely does);
        #: large on a GPU, which needs wide batches to be busy (benchmarks/gpu.sh measures the choice).
        self.batch_size = CPU_BATCH
        if self.device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            model = model.to(self.device, dtype=dtype)
            self.dtype, self.batch_size = str(dtype).removeprefix("torch."), CUDA_BATCH
        elif quantize == "int8" or (quantize == "auto" and self.device.type == "cpu"):
            # the head stays fp32: it costs nothing, keeps accuracy, and servers' own heads replace it
            model = _quantize_int8(model, keep_fp32=_head_names(model), per_channel=True)
            self.quantized = any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())
        self.model = model
        self._heads: HeadRunner | None = None

    @classmethod
    def load(cls, source: str | os.PathLike, *, device: str | None = None, version: str = "",
             quantize: str = "none", max_length: int = MAX_LENGTH) -> Classifier:
        """Load from a hub id or a local ``save_pretrained`` folder.

        Every failure becomes one :class:`ModelLoadError` whose message names the fix. What can be
        checked before the weights are read is (files, labels, the hub), so a wrong folder fails
        at once and quietly rather than after transformers' load report.
        """
        source = str(source)
        path = Path(source).expanduser()
        local = path.is_dir()
        if not local and source.startswith((".", "/", "~")):
            raise _explain_load_failure(source, FileNotFoundError(source))
        name = str(path) if local else source
        if local:
            _check_folder(path)
        options = {} if local else _hub_options(source)
        tokenizer, model = _load_pretrained(name, options)
        if not version:
            version = _version_from_metadata(path) if local else source
        try:
            return cls(model, tokenizer, device=device, version=version, source=name,
                       quantize=quantize, max_length=max_length)
        except ModelLoadError:
            raise
        except Exception as exc:  # noqa: BLE001 - bad labels, CUDA out of memory, ...
            raise ModelLoadError(f"model {name!r} cannot be used: {exc}") from None

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, truncated to ``max_length``, unpadded (padding is per batch)."""
        return self.tokenizer([prepare(t, self.text_form) for t in texts], truncation=True,
                              max_length=self.max_length)["input_ids"]

    def prepare_head(self, head: Head) -> Head:
        """``head`` checked against this model and moved to its device and precision, ready to serve.

        HeadError when it was trained on another base or does not fit (other labels or shapes).
        """
        if not head.fingerprint or head.fingerprint != self.fingerprint:
            raise HeadError(f"server version {head.name} was trained on base {head.base}, not on this one "
                            f"({self.version})")
        check_fits(self.model, head, self.labels)
        dtype = next((p.dtype for p in self._runner().parts[-1][1].parameters()), torch.float32)
        # named after the base as it is served here (the weights, not the name, decided the fit)
        return dataclasses.replace(head.to(self.device, dtype), base=self.version)

    def _runner(self) -> HeadRunner:
        if self._heads is None:
            self._heads = HeadRunner(self.model)
        return self._heads

    def predict(self, texts: Sequence[str], batch_size: int | None = None,
                heads: Sequence[Head | None] | None = None) -> list[Prediction]:
        """Predict every text, in order; see :meth:`predict_batches` for how they are batched."""
        out: list[Prediction | None] = [None] * len(texts)
        for indices, predictions in self.predict_batches(texts, batch_size, heads):
            for i, prediction in zip(indices, predictions):
                out[i] = prediction
        return out  # type: ignore[return-value]

    def predict_batches(self, texts: Sequence[str], batch_size: int | None = None,
                        heads: Sequence[Head | None] | None = None
                        ) -> Iterator[tuple[list[int], list[Prediction]]]:
        """``(indices into texts, their predictions)`` per forward pass, as each pass finishes.

        All texts are tokenized at once, sorted by token length and cut into batches of
        ``batch_size`` (default: :attr:`batch_size`, chosen for the device), so each batch is padded
        only to its own longest text: with many texts, batches are nearly length-homogeneous.
        Shortest first, so a caller answering per batch (the worker) answers most texts soonest.

        ``heads``: per text, a server's head (from :meth:`prepare_head`) or None for the base's own.
        Texts of different servers share the batches: the encoder runs once for all of them.
        """
        if not texts:
            return
        size = batch_size or self.batch_size
        ids = self.encode(texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), size):
            chunk = order[start:start + size]
            own = [heads[i] for i in chunk] if heads is not None and any(heads[i] is not None for i in chunk) else None
            probs = self._probabilities([ids[i] for i in chunk], own)
            rows_heads = own if own is not None else [None] * len(chunk)
            relative = self._relative(probs, rows_heads) if self.multi_label else [None] * len(chunk)
            yield chunk, [self._prediction(row, head, rel)
                          for row, head, rel in zip(probs.tolist(), rows_heads, relative)]

    @torch.inference_mode()
    def _probabilities(self, batch: list[list[int]], heads: Sequence[Head | None] | None = None) -> torch.Tensor:
        width = max(len(x) for x in batch)
        input_ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, seq in enumerate(batch):
            input_ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        inputs = dict(input_ids=torch.from_numpy(input_ids).to(self.device),
                      attention_mask=torch.from_numpy(mask).to(self.device))
        if heads is None:
            logits = self.model(**inputs).logits
        else:
            runner = self._runner()
            with runner.capture() as features:
                logits = self.model(**inputs).logits.clone()
            groups: dict[int, tuple[Head, list[int]]] = {}  # each server's rows, its head applied once
            for row, head in enumerate(heads):
                if head is not None:
                    groups.setdefault(id(head), (head, []))[1].append(row)
            for head, members in groups.values():
                index = torch.tensor(members, device=logits.device)
                logits[index] = runner.logits(head, features.value[index]).to(logits.dtype)
        logits = logits.float().cpu()
        return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)

    def _relative(self, probs: torch.Tensor, heads: Sequence[Head | None]) -> np.ndarray:
        """(rows × labels) :func:`model.metrics.relative_scores` of a batch, each row against its own thresholds."""
        base = self.thresholds.tolist()
        thresholds = [head.thresholds if head is not None and head.thresholds else base for head in heads]
        return relative_scores(probs.numpy(), np.asarray(thresholds))

    def _prediction(self, row: list[float], head: Head | None = None, relative: np.ndarray | None = None
                    ) -> Prediction:
        """The shown label: a single-label model's argmax; a multi-label model's label furthest above its
        own threshold (``relative``, from :meth:`_relative`), not the raw argmax, which favours the labels
        whose positive-class weights inflated their probabilities."""
        scores = dict(zip(self.labels, row))
        version = head.version if head else self.version
        if not self.multi_label:
            best = max(range(len(row)), key=row.__getitem__)
            return Prediction(self.labels[best], row[best], scores, (self.labels[best],), version)
        thresholds = head.thresholds if head is not None and head.thresholds else self.thresholds.tolist()
        order = np.argsort(-relative, kind="stable").tolist()
        chosen = tuple(lb for lb, p, t in zip(self.labels, row, thresholds) if p >= t)
        best = order[0]
        return Prediction(self.labels[best], row[best], scores, chosen, version, tuple(self.labels[j] for j in order))

    def describe(self) -> dict:
        """What ``/emotion about`` and ``--json`` show."""
        return {"source": self.source, "version": self.version, "device": str(self.device),
                "labels": list(self.labels), "multi_label": self.multi_label,
                "quantized": self.quantized, "dtype": self.dtype, "batch_size": self.batch_size,
                "max_length": self.max_length, "text_form": self.text_form}
