"""The SQLite store: the call cache, runs, samples and scores survive and round-trip."""

import os

import pytest

from capeval.errors import StoreError
from capeval.store import Store
from capeval.types import GenerationParams, MetricResult, Request, Response, RunResult, Score


def _req(prompt="p", **kw):
    return Request(kind="generate", prompt=prompt, params=GenerationParams(max_tokens=8), **kw)


def test_cache_key_covers_model_request_and_params():
    r = _req()
    assert r.key("m1") != r.key("m2")
    assert r.key("m1") != _req("q").key("m1")
    assert r.key("m1") != Request(kind="generate", prompt="p", params=GenerationParams(max_tokens=9)).key("m1")
    assert r.key("m1") != _req(repeat=1).key("m1")
    # where a request sits in a run is not part of what the model is asked
    assert r.key("m1") == _req(task="other", sample_id="x").key("m1")


def test_calls_round_trip_and_failures_are_not_cached(tmp_path):
    path = tmp_path / "s.db"
    ok, bad = _req("a"), _req("b")
    with Store(path) as s:
        s.put_calls("m", [(ok.key("m"), ok, Response(text="yes", latency_s=0.5, completion_tokens=1)),
                          (bad.key("m"), bad, Response(error="HTTP 500"))])
    with Store(path) as s:  # a new process would see the same rows
        got = s.get_calls([ok.key("m"), bad.key("m")])
        assert list(got) == [ok.key("m")]
        assert got[ok.key("m")].text == "yes" and got[ok.key("m")].cached
        (row,) = s.query("SELECT model_id, kind, latency_s, completion_tokens FROM model_calls")
        assert tuple(row) == ("m", "generate", 0.5, 1)


def test_one_row_sqlite_cannot_take_does_not_cost_the_others(store, caplog):
    """Text with an unpaired surrogate cannot be encoded as UTF-8: that answer alone stays uncached
    (the next run asks for it again); the group's other answers are kept."""
    reqs = [_req(f"q{i}") for i in range(4)]
    texts = ["a", "b \ud83d", "c", "d"]
    store.put_calls("m", [(r.key("m"), r, Response(text=t)) for r, t in zip(reqs, texts)])
    got = store.get_calls(r.key("m") for r in reqs)
    assert sorted(resp.text for resp in got.values()) == ["a", "c", "d"]
    assert reqs[1].key("m") not in got
    assert "not caching the answer" in caplog.text
    store.put_calls("m", [(reqs[1].key("m"), reqs[1], Response(text="b"))])  # the store is still usable
    assert store.get_calls([reqs[1].key("m")])[reqs[1].key("m")].text == "b"


def test_run_samples_scores_round_trip(store):
    run_id = store.start_run("m", "spec", ["t"], {"limit": 2})
    scores = [Score("s1", "t", {"acc": 1.0}, "B", True, "B"), Score("s2", "t", {"acc": 0.0}, None, False, "A")]
    rows = [{"task": "t", "sample_id": "s1", "prompt": "P1", "response": [{"text": "B"}]},
            {"task": "t", "sample_id": "s2", "prompt": "P2", "response": [{"text": "??"}]}]
    store.save_samples(run_id, rows, scores)
    result = RunResult(run_id, "spec", ("t",), (MetricResult("t", "acc", 0.5, 0.0, 1.0, 2, 0.5),))
    store.finish_run(result)
    assert store.run_result(run_id[:10]) == result
    samples = list(store.iter_samples(run_id))
    assert [(x["sample_id"], x["extracted"], x["parsed"], x["scores"]) for x in samples] == [
        ("s1", "B", True, {"acc": 1.0}), ("s2", None, False, {"acc": 0.0})]
    assert samples[0]["response"] == [{"text": "B"}] and samples[0]["prompt"] == "P1"


def test_a_run_id_prefix_names_one_run_or_is_refused_as_ambiguous(store):
    a, b = (store.start_run("m", "spec", ["t"], {}) for _ in range(2))
    shared = os.path.commonprefix([a, b])
    with pytest.raises(StoreError, match="ambiguous") as e:
        store.run(shared)
    assert a in (e.value.hint or "") and b in (e.value.hint or "")
    assert store.run(a)["run_id"] == a and store.run(b)["run_id"] == b
    assert store.run(a[: len(shared) + 1])["run_id"] == a  # one more character tells them apart
    assert store.run("nope") is None
    assert store.run(shared[:-1] + "_") is None  # a prefix is taken as written: '_' is no wildcard
