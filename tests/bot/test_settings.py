"""Settings: `.env` from the working folder, the hub's variables passed through, typos and missing paths refused."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bot.settings import SettingsError, load_settings
from tests.helpers import ROOT
from tests.helpers.fake_discord import TOKEN


@pytest.fixture
def clean_env(monkeypatch):
    """No EMOTION_*, DISCORD_* or Hugging Face variables from the test run's own environment."""
    for name in list(os.environ):
        if name.startswith(("EMOTION_", "DISCORD_", "HF_", "TRANSFORMERS_")):
            monkeypatch.delenv(name)
    return monkeypatch


def test_dotenv_is_read_from_the_working_folder(tmp_path, clean_env):
    (tmp_path / ".env").write_text("EMOTION_THRESHOLD=0.7\nEMOTION_DB=here/emotion.db\n")
    clean_env.chdir(tmp_path)
    loaded = load_settings()
    assert loaded.threshold == 0.7 and str(loaded.db_path) == "here/emotion.db"


def test_the_environment_wins_over_dotenv(tmp_path, clean_env):
    (tmp_path / ".env").write_text("EMOTION_THRESHOLD=0.7\n")
    clean_env.chdir(tmp_path)
    clean_env.setenv("EMOTION_THRESHOLD", "0.6")
    assert load_settings().threshold == 0.6


def test_hub_settings_in_dotenv_reach_the_hub_client_but_the_token_does_not(tmp_path):
    """A fresh interpreter: the hub reads HF_HUB_OFFLINE once, when it is imported (here: by the parser)."""
    (tmp_path / ".env").write_text(f"HF_HUB_OFFLINE=1\nHF_HOME={tmp_path / 'hf'}\nTRANSFORMERS_VERBOSITY=error\n"
                                   f"HF_HUB_DISABLE_TELEMETRY=0\nDISCORD_TOKEN={TOKEN}\n")
    code = ("from bot.cli import main\n"
            "try:\n    main(['predict', '--help'])\nexcept SystemExit:\n    pass\n"
            "import os, huggingface_hub.constants as hub\n"
            "print(hub.HF_HUB_OFFLINE, os.environ['HF_HOME'], os.environ.get('TRANSFORMERS_VERBOSITY'),"
            " os.environ['HF_HUB_DISABLE_TELEMETRY'], 'DISCORD_TOKEN' in os.environ)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMOTION_", "DISCORD_", "HF_", "TRANSFORMERS_"))}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_DISABLE_TELEMETRY="1")  # the environment wins over .env
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1].split() == ["True", str(tmp_path / "hf"), "error", "1", "False"]


@pytest.mark.parametrize("name, suggestion", [
    ("EMOTION_TRESHOLD", "did you mean EMOTION_THRESHOLD?"),
    ("EMOTION_MODEL_DIR", "did you mean EMOTION_MODELS_DIR?"),
    ("EMOTION_COLOUR", ".env.example"),
])
def test_an_unknown_emotion_setting_is_refused(name, suggestion):
    with pytest.raises(SettingsError, match=rf"{name} \(in the environment\) is not a setting") as err:
        load_settings({name: "0.7"})
    assert suggestion in str(err.value)


def test_an_unknown_name_in_dotenv_is_refused(tmp_path, clean_env):
    (tmp_path / ".env").write_text("EMOTION_TRESHOLD=0.7\n")
    clean_env.chdir(tmp_path)
    with pytest.raises(SettingsError, match=r"EMOTION_TRESHOLD \(in \.env\) is not a setting: did you mean "
                                            r"EMOTION_THRESHOLD\?"):
        load_settings()


def test_a_missing_replay_path_is_refused(tmp_path):
    missing = tmp_path / "replay.csv"
    with pytest.raises(SettingsError, match=f"EMOTION_REPLAY_PATH={missing}: no such file or folder"):
        load_settings({"EMOTION_REPLAY_PATH": str(missing)})
    missing.write_text("text,label\nhi,neutral\n")
    assert load_settings({"EMOTION_REPLAY_PATH": str(missing)}).replay_path == str(missing)
    assert load_settings({"EMOTION_REPLAY_PATH": "none"}).replay_path == "none"  # replay switched off


@pytest.mark.parametrize("name", ["go_emotions", "google-research-datasets/go_emotions", "hub:go_emotions"])
def test_a_hub_dataset_name_is_a_valid_replay_path(name, tmp_path, clean_env):
    clean_env.chdir(tmp_path)  # no such folder here: the name means the hub copy
    assert load_settings({"EMOTION_REPLAY_PATH": name}).replay_path == name


def test_a_database_path_that_cannot_be_a_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(SettingsError, match=r"EMOTION_DB=.*afile/x\.db: .*afile is a file, not a folder"):
        load_settings({"EMOTION_DB": str(tmp_path / "afile" / "x.db")})
    with pytest.raises(SettingsError, match=r"is a folder: name a file inside it, e.g\. .*emotion\.db"):
        load_settings({"EMOTION_DB": str(tmp_path)})


def test_a_copy_of_env_example_is_accepted_and_names_every_setting(tmp_path, clean_env):
    from bot.settings import _ENV, Settings, read_dotenv

    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text())
    clean_env.chdir(tmp_path)
    assert set(read_dotenv()) == set(_ENV.values())
    assert load_settings() == Settings()  # every line shows the default


def test_the_fine_tune_mix_is_a_weight_between_0_and_1(clean_env):
    assert load_settings({"EMOTION_FINETUNE_MIX": "0.75"}).finetune_mix == 0.75
    assert load_settings({}).finetune_mix is None  # FinetuneConfig's default (0.5)
    for bad in ("0", "1.5"):
        with pytest.raises(SettingsError, match="EMOTION_FINETUNE_MIX must be above 0 and at most 1"):
            load_settings({"EMOTION_FINETUNE_MIX": bad})
