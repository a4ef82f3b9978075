"""Defaults shared by the bot, inference and training, and the Trainer knobs ``train`` and ``finetune`` share.

Light on purpose (standard library only): ``bot.settings`` and :mod:`model.finetune_config` read
these without paying for torch (about 1.4 s), which :mod:`model.classifier` imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The model the bot starts from while the registry is empty (``EMOTION_MODEL``).
DEFAULT_MODEL = "boltuix/bert-emotion"
#: Tokens per text: chat messages are short, and 64 keeps batches cheap on CPU.
MAX_LENGTH = 64

#: GoEmotions on the Hugging Face hub (a training or replay source by name instead of a local folder).
GOEMOTIONS_HUB_ID = "google-research-datasets/go_emotions"


def is_hub_source(source: str) -> bool:
    """True for ``hub:go_emotions``-style names that mean the hub copy of GoEmotions."""
    source = str(source)
    if source.startswith("hub:"):
        return "go_emotions" in source
    return source in (GOEMOTIONS_HUB_ID, "go_emotions") and not Path(source).exists()  # a local folder wins


#: The losses ``train`` knows (:mod:`model.losses` implements them), by model type.
LOSSES = ("ce", "bce", "weighted-bce", "focal")
MULTI_LABEL_LOSSES = ("bce", "weighted-bce", "focal")
SINGLE_LABEL_LOSSES = ("ce", "focal")


def option(default: Any, help: str, **argparse_options: Any) -> Any:
    """A dataclass field with its command-line help (and aliases, choices), declared once.

    The CLI builds its options from these fields with ``HfArgumentParser``, so a default or a
    help text cannot differ between the parser and the code.
    """
    return field(default=default, metadata={"help": help, **argparse_options})


@dataclass
class TrainerKnobs:
    """What :func:`model.hf.training_arguments` reads: one Trainer run's optimisation and machine knobs.

    ``FinetuneConfig`` and ``TrainConfig`` extend it, so both runs build their Trainer the same
    way; evaluation builds one from it alone.
    """

    epochs: float = option(5.0, "passes over the data")
    learning_rate: float = option(3e-5, "peak learning rate (linear warm-up, then linear decay)", aliases=["--lr"])
    batch_size: int = option(16, "examples per optimizer step")
    eval_batch_size: int = option(64, "examples per evaluation batch")
    max_length: int = option(MAX_LENGTH, "tokens per text (longer texts are truncated)")
    max_steps: int = option(-1, "> 0 stops after this many optimizer steps (smoke runs, time-boxed runs)")
    seed: int = option(42, "random seed for shuffling and initialisation")
    weight_decay: float = option(0.01, "AdamW weight decay")
    warmup: float = option(0.1, "linear warm-up, as a fraction of the training steps")
    torch_threads: int | None = option(None, "torch threads (default: every core)", aliases=["--threads"])
    device: str = option("auto", "auto (CUDA when present), cpu, cuda or cuda:N")
    disable_tqdm: bool = option(True, "no tqdm bar from Trainer (the command draws its own from the events)")
    group_by_length: bool = option(True, "batch texts of similar length together, so dynamic padding pads less "
                                         "(about 2x on CPU)")
    progress_interval: float = option(0.5, "seconds between progress events (the last step is always sent)")
