"""Text as the model and the database can take it (light: the store uses it too)."""

from __future__ import annotations


def encodable(text: str) -> str:
    """``text`` as the tokenizer can take it: UTF-8 encodable.

    A lone surrogate (a JSON ``\\ud800`` escape in a Discord message, an undecodable byte in argv)
    makes the Rust tokenizer reject the whole batch. A split pair is joined back into its character;
    a lone one becomes U+FFFD, so the text still gets a prediction.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text
