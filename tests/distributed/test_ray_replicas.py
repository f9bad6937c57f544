"""`ray:<spec>`: a model spread over Ray actors on a real local Ray instance. Replicas of a scripted
OpenAI-compatible server model show the dealing, the order and the shared cache; SmolLM2 replicas
(slow) give the same log-likelihoods and greedy text as the model in this process."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is part of capeval[dev]")

from alter_scripts import Judge, mut_rule, write_crosseval
from capeval.engine import execute
from capeval.errors import CapevalError
from capeval.models import load_model
from capeval.types import GenerationParams, Message, Request
from scripted_chat import ScriptedChatServer


def echo(model: str, messages: list[dict[str, str]]) -> str:
    return f"echo {messages[-1]['content']}"


def requests(n: int) -> list[Request]:
    return [
        Request(kind="generate", prompt=(Message("user", f"q{i}"),), params=GenerationParams(max_tokens=8), sample_id=str(i))
        for i in range(n)
    ]


def test_replicas_share_the_work_keep_the_order_and_the_cache_key(store):
    """Starts (and stops) its own local Ray instance, as `capeval run --model ray:...` does."""
    assert not ray.is_initialized()
    with ScriptedChatServer(echo) as srv:
        m = load_model("ray:openai:echo", base_url=srv.base_url, replicas=2)
        try:
            assert m.started_ray and ray.is_initialized()
            answers, stats = execute(m, requests(9), store)
            assert [a.text for a in answers] == [f"echo q{i}" for i in range(9)]
            assert stats.new == 9
            pids = m.replica_stats()
            assert len({pid for pid, _ in pids}) == 2 and sorted(n for _, n in pids) == [4, 5]
            # the same model id as the spec without ray: a local re-run is answered from the cache
            plain = load_model("openai:echo", base_url=srv.base_url)
            assert m.model_id == plain.model_id
            before = len(srv.requests)
            again, stats = execute(plain, requests(9), store)
            assert stats.cached == 9 and len(srv.requests) == before and [a.text for a in again] == [a.text for a in answers]
        finally:
            m.close()
    assert not ray.is_initialized()


def test_option_errors_come_before_any_replica_starts():
    with pytest.raises(CapevalError, match="'dtyp'"):
        load_model("ray:openai:echo", base_url="http://127.0.0.1:9/v1", dtyp="x")
    with pytest.raises(CapevalError, match="at least 1"):
        load_model("ray:openai:echo", base_url="http://127.0.0.1:9/v1", replicas=0)
    with pytest.raises(CapevalError, match="another ray"):
        load_model("ray:ray:openai:echo")
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


def test_a_dead_replica_fails_its_share_and_the_rest_is_answered(cluster, store):
    with ScriptedChatServer(echo) as srv:
        m = load_model("ray:openai:echo", base_url=srv.base_url, replicas=2)
        assert not m.started_ray  # joined the running instance
        ray.kill(m._actors[1])
        answers, stats = execute(m, requests(4), store)
        assert [a.error is None for a in answers] == [True, False, True, False]
        assert "replica 1 failed" in answers[1].error and stats.failed == 2
        # failed calls are not cached: a re-run with healthy replicas answers them
        m.close()
        healthy = load_model("ray:openai:echo", base_url=srv.base_url, replicas=2)
        again, stats = execute(healthy, requests(4), store)
        assert stats.cached == 2 and stats.new == 2 and all(a.error is None for a in again)
        healthy.close()


def test_a_replica_that_cannot_load_the_model_is_one_clear_error(cluster, tmp_path):
    with pytest.raises(CapevalError, match="a replica could not load hf:.*nothing-here"):
        load_model(f"ray:hf:{tmp_path / 'nothing-here'}", replicas=2)


def test_capeval_run_with_ray_replicas_matches_a_local_run(cluster, tmp_path):
    import json

    from capeval.cli import main

    data = write_crosseval(tmp_path / "ce")
    with ScriptedChatServer(mut_rule) as mut, ScriptedChatServer(Judge()) as judge:
        outs = []
        for name, spec, extra in (("ray", f"ray:openai:mut@{mut.base_url}", ["--model-option", "replicas=2"]),
                                  ("local", f"openai:mut@{mut.base_url}", [])):
            out = tmp_path / f"{name}.json"
            main(["run", "--model", spec, *extra, "--judge", f"openai:judge@{judge.base_url}", "--tasks", "crosseval",
                  "--data", f"crosseval={data}", "--db", str(tmp_path / f"{name}.db"), "--json", str(out), "--no-progress"])
            outs.append({(r["task"], r["metric"]): r["value"] for r in json.loads(out.read_text())["metrics"]})
    assert outs[0] == outs[1] and outs[0][("crosseval", "score_100")] > 0


@pytest.mark.slow
def test_smollm2_replicas_answer_as_the_local_model(cluster, smollm2):
    ll = [
        Request(kind="loglikelihood", prompt=f"Question {i}: 2 + {i} =", continuations=(f" {2 + i}", " 7", " banana"))
        for i in range(5)
    ]
    gen = [Request(kind="generate", prompt=(Message("user", f"Name a colour number {i}."),), params=GenerationParams(max_tokens=12))
           for i in range(3)]
    m = load_model("ray:smollm2-135m-instruct", replicas=2)
    try:
        assert m.model_id == smollm2.model_id
        assert m.identity == smollm2.identity and "#" in m.model_id  # the weights' fingerprint
        remote_ll, local_ll = m.loglikelihood(ll), smollm2.loglikelihood(ll)
        for r, lo in zip(remote_ll, local_ll):
            assert r.logprobs == pytest.approx(lo.logprobs, rel=1e-5, abs=1e-4) and r.is_greedy == lo.is_greedy
        assert [r.text for r in m.generate(gen)] == [r.text for r in smollm2.generate(gen)]
    finally:
        m.close()
