"""Per-layer linear probes: the ridge and the split on synthetic data, CSV errors, and a year probe
on the bundled SmolLM2 over well-known people's birth years (negative: BC)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from capeval.errors import DatasetError
from capeval.interpret.probing import (
    ProbeData,
    ProbeError,
    entity_prompts,
    fit_ridge,
    probe_layers,
    r2_score,
    read_probe_csv,
    split,
)

PEOPLE = """\
Isaac Newton,1643
Albert Einstein,1879
Charles Darwin,1809
Marie Curie,1867
Galileo Galilei,1564
William Shakespeare,1564
Leonardo da Vinci,1452
Wolfgang Amadeus Mozart,1756
Ludwig van Beethoven,1770
Johann Sebastian Bach,1685
Napoleon Bonaparte,1769
Julius Caesar,-100
Abraham Lincoln,1809
George Washington,1732
Thomas Jefferson,1743
Winston Churchill,1874
Mahatma Gandhi,1869
Nelson Mandela,1918
Martin Luther King Jr.,1929
John F. Kennedy,1917
Queen Victoria,1819
Karl Marx,1818
Sigmund Freud,1856
Vincent van Gogh,1853
Pablo Picasso,1881
Michelangelo,1475
Christopher Columbus,1451
Nicolaus Copernicus,1473
Johannes Kepler,1571
Aristotle,-384
Socrates,-470
Confucius,-551
Alexander the Great,-356
Cleopatra,-69
Charles Dickens,1812
Jane Austen,1775
Leo Tolstoy,1828
Mark Twain,1835
Ernest Hemingway,1899
Frida Kahlo,1907
Steve Jobs,1955
Bill Gates,1955
Elvis Presley,1935
Marilyn Monroe,1926
Barack Obama,1961
Henry VIII,1491
Martin Luther,1483
Joan of Arc,1412
Dante Alighieri,1265
Marco Polo,1254
Thomas Edison,1847
Nikola Tesla,1856
Alan Turing,1912
Ada Lovelace,1815
Florence Nightingale,1820
Benjamin Franklin,1706
Stephen Hawking,1942
John Lennon,1940
Neil Armstrong,1930
Louis Pasteur,1822
Rembrandt,1606
Claude Monet,1840
Immanuel Kant,1724
René Descartes,1596
Voltaire,1694
Catherine the Great,1729
Augustus,-63
Genghis Khan,1162
"""


@pytest.fixture
def people_csv(tmp_path):
    path = tmp_path / "people.csv"
    path.write_text("entity,year\n" + PEOPLE, encoding="utf-8")
    return path


# ---- the probe on synthetic data -----------------------------------------------------------------
def _synthetic(n=80, d=40, seed=0):
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=(n, d))
    y = signal @ rng.normal(size=(d, 2)) + 0.1 * rng.normal(size=(n, 2))
    # layer 0 is noise, layer 1 holds the targets linearly, layer 2 a weaker copy
    states = np.stack([rng.normal(size=(n, d)), signal, signal + 3.0 * rng.normal(size=(n, d))])
    data = ProbeData(tuple(f"e{i}" for i in range(n)), ("lat", "lon"), y)
    return states, data


def test_ridge_recovers_a_linear_map_and_picks_its_penalty():
    states, data = _synthetic()
    probe = fit_ridge(states[1][:60], data.targets[:60])
    assert r2_score(data.targets[60:], probe.predict(states[1][60:])).min() > 0.95
    # on pure noise the leave-one-out choice shrinks hard (large penalty): predictions near the mean
    noise = fit_ridge(states[0][:60], data.targets[:60])
    assert noise.alpha > 10 * probe.alpha


def test_ridge_agrees_with_scikit_learn():
    sklearn = pytest.importorskip("sklearn.linear_model")
    from capeval.interpret.probing import ALPHAS

    states, data = _synthetic(n=50, d=80)  # more features than entities, as with real hidden states
    x = states[2][:40]
    y = data.targets[:40]
    probe = fit_ridge(x, y)
    xs = (x - x.mean(axis=0)) / x.std(axis=0)
    # RidgeCV's efficient leave-one-out picks the same penalty; Ridge with it the same predictions
    assert sklearn.RidgeCV(alphas=ALPHAS).fit(xs, y).alpha_ == probe.alpha
    reference = sklearn.Ridge(alpha=probe.alpha).fit(xs, y)
    x_new = (states[2][40:] - x.mean(axis=0)) / x.std(axis=0)
    np.testing.assert_allclose(probe.predict(states[2][40:]), reference.predict(x_new), rtol=1e-6, atol=1e-6)


def test_probe_layers_finds_the_layer_that_holds_the_target():
    states, data = _synthetic()
    report = probe_layers(states, data, seed=3, test_fraction=0.25)
    assert [p.layer for p in report.layers] == [0, 1, 2]
    assert (report.n_train, report.n_test) == (60, 20)
    assert report.best_layer == 1
    one = report.layer(1)
    assert set(one.r2) == {"lat", "lon"} and min(one.r2.values()) > 0.95
    assert report.layer(2).mean_r2 < one.mean_r2
    assert report.layer(0).mean_r2 < 0.2
    # shuffled training targets carry no signal: the control stays near or below 0 everywhere
    assert max(p.mean_control_r2 for p in report.layers) < 0.2
    # held-out predictions at the best layer, one per held-out entity
    assert len(report.predictions) == 20 and {"entity", "lat", "lat_predicted"} <= set(report.predictions[0])
    # the same seed gives the same report; another seed another split
    assert probe_layers(states, data, seed=3) == report
    assert probe_layers(states, data, seed=4).predictions != report.predictions


def test_split_is_seeded_and_disjoint():
    train, test = split(40, 0.25, seed=7)
    assert len(test) == 10 and len(train) == 30 and not set(train) & set(test)
    assert set(train) | set(test) == set(range(40))
    assert split(40, 0.25, seed=7)[1].tolist() == test.tolist()
    with pytest.raises(ProbeError, match="test fraction"):
        split(40, 1.5, seed=0)


def test_states_must_match_the_entities():
    states, data = _synthetic()
    with pytest.raises(ProbeError, match="do not match 80 entities"):
        probe_layers(states[:, :50], data)


def test_a_backend_without_hidden_states_is_refused():
    from capeval.interpret.probing import run_probe

    class Remote:
        model_id = "openai:some-chat-model"

    _, data = _synthetic()
    with pytest.raises(ProbeError, match="openai:some-chat-model does not expose hidden states"):
        run_probe(Remote(), data)


# ---- CSV and prompt errors ---------------------------------------------------------------------
def test_read_probe_csv(people_csv):
    data = read_probe_csv(people_csv, ["year"])
    assert len(data.entities) == 68 and data.targets.shape == (68, 1)
    assert data.entities[11] == "Julius Caesar" and data.targets[11, 0] == -100


@pytest.mark.parametrize(
    ("text", "targets", "message"),
    [
        ("entity,year\n" + PEOPLE, ["born"], "has no column 'born'"),
        ("name,year\n" + PEOPLE, ["year"], "has no column 'entity'"),
        ("entity,year\n" + PEOPLE + "Homer,unknown\n", ["year"], "line 70: year 'unknown' is not a number"),
        ("entity,year\n" + PEOPLE + "Voltaire,1694\n", ["year"], "line 70: 'Voltaire' also on line 66"),
        ("entity,year\n" + PEOPLE + ",1900\n", ["year"], "line 70: empty entity"),
        ("entity,year\nIsaac Newton,1643\nAda Lovelace,1815\n", ["year"], "has 2 entities"),
        ("", ["year"], "is empty"),
    ],
)
def test_bad_csv_is_refused_with_the_line(tmp_path, text, targets, message):
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        read_probe_csv(path, targets)


def test_missing_file_and_prompt_without_entity(tmp_path):
    with pytest.raises(DatasetError, match="probe data not found"):
        read_probe_csv(tmp_path / "nope.csv", ["year"])
    with pytest.raises(ProbeError, match="must hold '\\{entity\\}' once"):
        entity_prompts(["Ada Lovelace"], "Tell me about them")
    texts, ends = entity_prompts(["Ada Lovelace"], "{entity} was born in the year")
    assert texts == ["Ada Lovelace was born in the year"] and ends == [len("Ada Lovelace")]


def test_cli_bad_csv_is_a_one_line_error_before_loading_a_model(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("entity,year\n" + PEOPLE + "Homer,unknown\n", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "capeval", "probe", "--data", str(path), "--target", "year", "--model", "no-such-model"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 2, out.stderr
    # rich wraps long lines at the terminal's width
    assert " ".join(out.stderr.split()).startswith(f"error: {path} line 70: year 'unknown' is not a number hint:")
    assert "Traceback" not in out.stderr


# ---- on the bundled model -----------------------------------------------------------------------
@pytest.mark.slow
def test_entity_state_is_read_at_its_last_token(smollm2):
    alone = smollm2.hidden_states(["Ada Lovelace", "Isaac Newton"])
    assert alone.shape == (smollm2.model.config.num_hidden_layers + 1, 2, smollm2.model.config.hidden_size)
    # a causal model's state at the entity's last token ignores what the prompt says after it,
    # and batching (padding) changes nothing
    texts, ends = entity_prompts(["Ada Lovelace", "Isaac Newton"], "{entity} was born in the year")
    inside = smollm2.hidden_states(texts, ends)
    assert_close_to_layer_scale(inside, alone)
    single = smollm2.hidden_states(["Isaac Newton"])
    assert_close_to_layer_scale(single[:, 0], alone[:, 1])
    # the check can fail: another entity's state is far off on that scale
    with pytest.raises(AssertionError):
        assert_close_to_layer_scale(single[:, 0], alone[:, 0])


def assert_close_to_layer_scale(got: np.ndarray, want: np.ndarray, rtol: float = 1e-5) -> None:
    """Equal up to float32 rounding: every element within rtol of its layer's largest |value|.

    Hidden states reach ~10^2-10^3 in later layers, where batch shape and thread scheduling move the
    last float32 digits (213.05571 vs 213.05559); a tolerance on the layer's scale holds for both the
    small embedding layer and those, and elements near zero are not held to a relative tolerance of
    their own tiny size."""
    scale = np.abs(want).reshape(want.shape[0], -1).max(axis=1)  # one scale per layer
    diff = np.abs(got - want).reshape(want.shape[0], -1).max(axis=1)
    assert (diff <= rtol * scale).all(), f"max |diff| / layer scale per layer: {diff / scale}"


@pytest.mark.slow
def test_year_probe_on_smollm2_beats_the_shuffled_control(smollm2, people_csv):
    from capeval.interpret.probing import run_probe

    data = read_probe_csv(people_csv, ["year"])
    report = run_probe(smollm2, data, seed=0)
    assert len(report.layers) == smollm2.model.config.num_hidden_layers + 1
    assert report.n_train + report.n_test == 68 and report.n_test == 17
    best = report.layer(report.best_layer)
    # birth years are linearly readable from the entity's last token: the held-out R^2 at the
    # best layer clearly beats a probe trained on shuffled years, which has nothing to learn
    assert best.r2["year"] > 0.3 and best.r2["year"] > best.control_r2["year"] + 0.3
    assert max(p.control_r2["year"] for p in report.layers) < 0.2
    # the transformer layers add to what the token embeddings alone give
    assert best.r2["year"] > report.layer(0).r2["year"]


@pytest.mark.slow
def test_cli_probe_prints_the_table_and_writes_json(people_csv, tmp_path):
    out_json = tmp_path / "probe.json"
    out = subprocess.run(
        [sys.executable, "-m", "capeval", "probe", "--data", str(people_csv), "--target", "year",
         "--prompt", "{entity} was born in", "--json", str(out_json)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "R^2 year" in out.stdout and "control year" in out.stdout and "best layer" in out.stdout
    result = json.loads(out_json.read_text())
    assert result["targets"] == ["year"] and result["prompt"] == "{entity} was born in"
    assert len(result["layers"]) == 31 and result["n_test"] == 17
    assert result["best_layer"] in {p["layer"] for p in result["layers"]}
    assert {"r2", "control_r2", "alpha"} <= set(result["layers"][0]) and len(result["predictions"]) == 17
