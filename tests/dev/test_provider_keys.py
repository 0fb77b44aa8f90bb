"""`.env` provider keys turn on the cloud examples that need only those keys; the rest say what they lack."""

from __future__ import annotations

from pathlib import Path

from voxfleet.devplatform.provider_keys import cloud_examples, read_env_file

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ALL_KEYS = {"DEEPGRAM_API_KEY": "dg-secret-1", "OPENAI_API_KEY": "sk-secret-2", "CARTESIA_API_KEY": "ca-secret-3",
            "ELEVENLABS_API_KEY": "el-secret-4"}


def test_env_files_are_read_like_dotenv(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("# provider keys\nexport DEEPGRAM_API_KEY=dg-1\nOPENAI_API_KEY = 'sk 2'\n"
                        'CARTESIA_API_KEY="ca#3"\nELEVENLABS_API_KEY=el-4 # my key\nnot a line\n\nEMPTY=\n')
    assert read_env_file(env_file) == {"DEEPGRAM_API_KEY": "dg-1", "OPENAI_API_KEY": "sk 2",
                                       "CARTESIA_API_KEY": "ca#3", "ELEVENLABS_API_KEY": "el-4", "EMPTY": ""}
    assert read_env_file(tmp_path / "missing") == {}


def test_with_every_key_the_support_bot_runs_with_its_secret_filled_and_the_self_hosted_one_is_skipped():
    runnable, skipped = cloud_examples(EXAMPLES, ALL_KEYS)
    assert [example.name for example in runnable] == ["support-bot.yaml"]
    support = runnable[0]
    assert support.agents == [("tenant-acme", "support")]
    secret = next(d for d in support.documents if d["kind"] == "Secret")
    data = secret["stringData"]
    assert (data["deepgram"], data["openai"], data["cartesia"]) == ("dg-secret-1", "sk-secret-2", "ca-secret-3")
    assert data["orders-api"].startswith("dev-")  # the example's own backend: a throwaway token
    assert len(skipped) == 1 and skipped[0].startswith("restaurant-booking.yaml: needs a self-hosted model")
    assert not any(value in line for line in skipped for value in ALL_KEYS.values())


def test_a_missing_key_names_the_variable_to_add_and_never_a_value():
    runnable, skipped = cloud_examples(EXAMPLES, {"DEEPGRAM_API_KEY": "dg-secret-1", "OPENAI_API_KEY": ""})
    assert runnable == []
    line = next(line for line in skipped if line.startswith("support-bot.yaml"))
    assert "CARTESIA_API_KEY" in line and "OPENAI_API_KEY" in line and "DEEPGRAM_API_KEY" not in line
    assert "dg-secret-1" not in " ".join(skipped)
