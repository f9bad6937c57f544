"""Backend options (`--model-option KEY=VALUE`, `load_model(spec, **options)`): a key no backend
takes is refused by name, with the accepted keys and the closest one, before any weights load."""

from __future__ import annotations

import subprocess
import sys

import pytest

from capeval.errors import ModelError
from capeval.models import load_model
from capeval.models.openai_api import OpenAIModel


def refused(spec: str, **options) -> ModelError:
    with pytest.raises(ModelError) as info:
        load_model(spec, **options)
    return info.value


def test_hf_backend_names_the_unknown_key_and_the_close_one():
    # the folder does not exist: the option is checked first, so no path error hides the typo
    e = refused("hf:/no/such/model", dtyp="bfloat16")
    assert e.args[0] == "unknown option 'dtyp' for the hf backend"
    assert e.hint.startswith("did you mean 'dtype'? the hf backend takes: ")
    assert "batch_size" in e.hint and "chat_template" in e.hint and "max_length" in e.hint


def test_hf_backend_refuses_a_server_url():
    e = refused("hf:/no/such/model", base_url="http://127.0.0.1:9/v1")
    assert e.args[0] == "unknown option 'base_url' for the hf backend"


def test_bundled_model_refuses_unknown_and_source_options_before_loading():
    e = refused("smollm2-135m-instruct", batchsize=2)
    assert e.args[0] == "unknown option 'batchsize' for the bundled backend"
    assert "did you mean 'batch_size'?" in e.hint
    # the package fixes the weights and their cache identity
    for key in ("model_id", "gguf_file", "revision"):
        assert refused("smollm2-135m-instruct", **{key: "x"}).args[0] == f"unknown option '{key}' for the bundled backend"


def test_openai_backend_names_the_unknown_key():
    e = refused("openai:m@http://127.0.0.1:9/v1", concurency=4)
    assert e.args[0] == "unknown option 'concurency' for the openai backend"
    assert e.hint.startswith("did you mean 'concurrency'? the openai backend takes: ")
    assert "max_retries" in e.hint and "string_prompts" in e.hint


def test_options_every_command_passes_are_still_taken():
    # commands send --batch-size and --concurrency to every model they load
    m = load_model("openai:m@http://127.0.0.1:9/v1", batch_size=4, concurrency=3, max_retries=0, timeout=5)
    assert isinstance(m, OpenAIModel) and m.concurrency == 3 and m.policy.max_retries == 0


def test_cli_model_option_typo_is_a_one_line_error(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "capeval", "run", "--model", "smollm2-135m-instruct", "--tasks", "mtbench-category",
         "--limit", "1", "--no-progress", "--db", str(tmp_path / "x.db"), "--model-option", "max_lenght=512"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.splitlines()[0] == "error: unknown option 'max_lenght' for the bundled backend"
    assert "did you mean 'max_length'?" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_bundled_model_loads_with_the_command_line_options():
    m = load_model("smollm2-135m-instruct", batch_size=3, concurrency=4, max_length=512)
    assert m.batch_size == 3 and m.max_length == 512
