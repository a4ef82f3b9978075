"""A tiny BERT and a word-level vocabulary, built from a config, so tests never need the hub."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from model.labels import SEED13

WORDS = (
    "i am so happy sad angry love you hate this my new phone is great terrible what why how "
    "scared afraid wow really thanks sorry ugh the a it not very good bad disgusting gross "
    "confused want need oh sure yeah right lol ok fine today feel feeling totally"
).split()


def build_tiny_model(folder: str | Path, labels: Sequence[str] = SEED13, *, seed: int = 0,
                     multi_label: bool = False, hidden: int = 32, layers: int = 2,
                     confident: str | None = None, word_std: float | None = None) -> Path:
    """Write a random 2-layer BERT with ``labels`` and a vocab to ``folder`` via save_pretrained.

    ``confident`` names a label the model then predicts for every text with probability ~1,
    so bot tests can rely on a reaction being above the threshold. ``word_std`` redraws the word
    embeddings that wide, so that [CLS] depends on the words as a pretrained encoder's does (a
    server's head, trained with the encoder frozen, can then tell texts apart).
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"abcdefghijklmnopqrstuvwxyz!?.,'"]
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab=str(folder / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=hidden * 2, max_position_embeddings=128, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id={lb: i for i, lb in enumerate(labels)},
        problem_type="multi_label_classification" if multi_label else "single_label_classification",
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,  # so tiny fine-tunes converge every time
        **({"initializer_range": word_std / 2} if word_std is not None else {}),
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    if word_std is not None:
        with torch.no_grad():
            model.bert.embeddings.word_embeddings.weight.normal_(0.0, word_std)
    if confident is not None:
        with torch.no_grad():
            model.classifier.weight.zero_()  # the same answer whatever the text
            model.classifier.bias[list(labels).index(confident)] = 3.0
    model.save_pretrained(folder)
    return folder
