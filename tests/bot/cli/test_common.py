"""What every command shares: the log filter that keeps the bot token out of every log line."""

from __future__ import annotations

import io
import logging

import pytest

from bot.cli.common import RedactToken

TOKEN = "MTA4NzY1NDMyMTA5ODc2NTQzMg.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"


@pytest.fixture
def logged():
    """A logger whose handler formats like the CLI's and redacts ``TOKEN``; yields the logger and its output."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactToken(TOKEN))
    logger = logging.getLogger("redact-chain-test")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def login_failure(chained: bool) -> None:
    """A login error whose cause (explicit) or context (implicit) carries the token, as an HTTP library's might."""
    try:
        raise ValueError(f"Authorization: Bot {TOKEN} was refused")
    except ValueError as exc:
        if chained:
            raise RuntimeError("login failed") from exc
        raise RuntimeError("login failed")  # noqa: B904 - the implicit context is the point


@pytest.mark.parametrize("chained", [True, False], ids=["cause", "context"])
def test_a_token_in_a_chained_exception_is_redacted_and_the_traceback_kept(logged, chained):
    logger, stream = logged
    try:
        login_failure(chained)
    except RuntimeError:
        logger.exception("could not start")
    out = stream.getvalue()
    assert TOKEN not in out
    assert "could not start" in out and "RuntimeError: login failed" in out
    assert "ValueError: Authorization: Bot [token] was refused" in out  # the cause is still told, redacted
    assert "Traceback (most recent call last)" in out


def test_a_token_in_args_and_in_the_stack_is_redacted(logged):
    logger, stream = logged
    logger.handle(logging.makeLogRecord({
        "name": logger.name, "levelno": logging.WARNING, "levelname": "WARNING",
        "msg": "retrying with %r", "args": ({"token": TOKEN},),
        "stack_info": f'Stack (most recent call last):\n  File "x.py", line 1, in <module>\n    login("{TOKEN}")'}))
    out = stream.getvalue()
    assert TOKEN not in out
    assert "retrying with {'token': '[token]'}" in out and 'login("[token]")' in out


def test_records_without_the_token_are_left_alone(logged):
    logger, stream = logged
    try:
        raise KeyError("nothing secret")
    except KeyError:
        logger.exception("plain %s", "failure")
    out = stream.getvalue()
    assert "plain failure" in out and "KeyError: 'nothing secret'" in out and "[token]" not in out
