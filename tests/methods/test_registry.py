"""Tests of the method registry: declarations read from signatures, common inputs checked once, before the method."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from kmq.errors import InvalidParameterError
from kmq.methods import METHODS, Picked, get_method, register
from kmq.methods._arrays import child_seed


def unit(rows: int, d: int = 4, seed: int = 0) -> np.ndarray:
    X = np.random.default_rng(seed).normal(size=(rows, d))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


def inputs(n: int = 8) -> dict[str, np.ndarray]:
    labels = np.arange(n) % 2
    X = unit(n)
    return {
        "labels": labels,
        "quality": np.arange(float(n)),
        "embeddings": X,
        "centroids": np.stack([X[labels == c].mean(axis=0) for c in (0, 1)]),
    }


@pytest.fixture
def scratch():
    """Register throw-away methods; they are removed from METHODS afterwards."""
    before = set(METHODS)
    yield register
    for name in set(METHODS) - before:
        del METHODS[name]


def test_needs_and_defaults_come_from_the_signature(scratch):
    @scratch("test-probe", help="probe")
    def probe(*, n, budget, random_state, quality, labels, tau: float = 0.5, mode: str = "a") -> Picked:
        return Picked(indices=np.arange(budget, dtype=np.int64))

    method = get_method("test-probe")
    assert method.needs == {"quality", "labels"}
    assert method.params == {"tau": 0.5, "mode": "a"}
    assert method.fn is probe and method.help == "probe"
    assert list(inspect.signature(probe).parameters) == [
        "n", "budget", "random_state", "quality", "labels", "tau", "mode",
    ]  # fmt: skip


def test_builtin_defaults_equal_the_signature_defaults():
    for method in METHODS.values():
        params = inspect.signature(method.fn).parameters
        assert method.params == {k: params[k].default for k in method.params}
        assert method.needs <= set(params)
    assert "allocation" in inspect.signature(get_method("kmq").fn).parameters


@pytest.mark.parametrize(
    "bad",
    [
        "def f(n, budget, random_state): ...",
        "def f(*, n, budget, random_state, tau): ...",
        "def f(*, n, random_state): ...",
    ],
)
def test_a_bad_declaration_is_refused_at_registration(scratch, bad):
    namespace: dict = {}
    exec(bad, namespace)
    with pytest.raises(TypeError, match="keyword-only"):
        scratch("test-bad")(namespace["f"])
    assert "test-bad" not in METHODS


def test_inputs_are_checked_and_converted_before_the_method_runs(scratch):
    seen = {}

    @scratch("test-seen")
    def seen_method(*, n, budget, random_state, labels, quality, embeddings, centroids) -> Picked:
        seen.update(random_state=random_state, labels=labels, quality=quality, embeddings=embeddings,
                    centroids=centroids, n=n, budget=budget)  # fmt: skip
        return Picked(indices=np.arange(budget, dtype=np.int64))

    data = inputs()
    data["labels"] = data["labels"].astype(np.int32)
    data["quality"] = np.arange(8, dtype=np.int16)
    data["embeddings"] = np.asfortranarray(data["embeddings"].astype(np.float64))
    seen_method(n=np.int64(8), budget=3, random_state=5, **data)
    assert isinstance(seen["random_state"], np.random.Generator)
    assert seen["labels"].dtype == np.int64 and seen["quality"].dtype == np.float64
    assert seen["embeddings"].dtype == np.float32 and seen["embeddings"].flags.c_contiguous
    assert seen["centroids"].dtype == np.float32
    assert type(seen["n"]) is int and type(seen["budget"]) is int

    seen.clear()
    with pytest.raises(InvalidParameterError, match=r"'budget' parameter of test-seen .*\[0, 8\]"):
        seen_method(n=8, budget=9, random_state=0, **data)
    assert not seen  # the method never ran
    with pytest.raises(TypeError, match="unexpected keyword argument 'tau'"):
        seen_method(n=8, budget=3, random_state=0, tau=1, **data)
    with pytest.raises(TypeError, match="'quality'"):
        seen_method(n=8, budget=3, random_state=0, **{k: v for k, v in data.items() if k != "quality"})
    with pytest.raises(TypeError):
        seen_method(8, 3, 0, **data)


def call(name: str, *, n=8, budget=3, random_state=0, **change):
    """Run a registered method on the small pool of :func:`inputs`, with some inputs changed."""
    method = get_method(name)
    data = {k: v for k, v in inputs().items() if k in method.needs}
    return method.fn(n=n, budget=budget, random_state=random_state, **{**data, **change})


def names_needing(what: str) -> list[str]:
    return sorted(name for name, m in METHODS.items() if what in m.needs)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_gets_the_same_budget_and_random_state_checks(name):
    assert len(call(name).indices) == 3
    with pytest.raises(InvalidParameterError, match=rf"^The 'budget' parameter of {name} .*\[0, 8\].*Got 9"):
        call(name, budget=9)
    with pytest.raises(InvalidParameterError, match=rf"^The 'n' parameter of {name} must be an int"):
        call(name, n=-1, budget=0)
    with pytest.raises(InvalidParameterError, match=rf"^The 'random_state' parameter of {name} must be an int"):
        call(name, random_state="seed")


@pytest.mark.parametrize("name", names_needing("quality"))
def test_every_quality_method_rejects_non_finite_quality(name):
    with pytest.raises(InvalidParameterError, match=rf"'quality' parameter of {name} must be finite.*row 2"):
        call(name, quality=np.array([1.0, 2, np.nan, 4, 5, 6, 7, 8]))


@pytest.mark.parametrize("name", names_needing("embeddings"))
def test_every_embedding_method_rejects_rows_that_are_not_unit_norm(name):
    X = inputs()["embeddings"].copy()
    X[3] *= 3  # kmeans-closest used to accept it silently
    with pytest.raises(InvalidParameterError, match=rf"'embeddings' parameter of {name} .*Row 3 has norm 3"):
        call(name, embeddings=X)
    with pytest.raises(InvalidParameterError, match=rf"'embeddings' parameter of {name} .*shape \(8, d\)"):
        call(name, embeddings=X[:5])


@pytest.mark.parametrize("name", names_needing("labels"))
def test_every_cluster_method_checks_its_labels(name):
    with pytest.raises(InvalidParameterError, match="'labels' has 5 rows but the pool has n=8"):
        call(name, labels=np.zeros(5, np.int64))
    with pytest.raises(InvalidParameterError, match=rf"'labels' parameter of {name} must be a 1-D int array"):
        call(name, labels=np.zeros(8))


def test_centroids_must_match_the_embeddings_and_the_labels():
    with pytest.raises(InvalidParameterError, match=r"'centroids' parameter of kmeans-closest .*shape \(k, 4\)"):
        call("kmeans-closest", centroids=np.ones((2, 3), np.float32))
    with pytest.raises(InvalidParameterError, match=r"cluster ids up to 2 but 'centroids' covers only 2 clusters"):
        call("kmeans-closest", labels=np.arange(8) % 3)


def test_child_seed_leaves_the_parent_stream_alone():
    rng = np.random.default_rng(3)
    a, b = child_seed(rng), child_seed(rng)
    assert a != b and 0 <= a < 2**30
    assert rng.random() == np.random.default_rng(3).random()
    assert child_seed(np.random.default_rng(3)) == a
