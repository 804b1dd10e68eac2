import numpy as np
import pytest

from kmq.errors import InvalidParameterError
from kmq.methods import get_method


def unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_kmeans_closest_hand_worked():
    # two clusters on the circle; centroid directions (1, 0) and (0, 1)
    angles = np.array([0.0, 0.3, 0.1, -0.5, np.pi / 2, np.pi / 2 + 0.2, np.pi / 2 - 0.05])
    X = unit(np.column_stack([np.cos(angles), np.sin(angles)]))
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    C = np.array([[1, 0], [0, 1]], dtype=np.float32)
    fn = get_method("kmeans-closest").fn
    picked = fn(n=7, budget=4, random_state=0, labels=labels, centroids=C, embeddings=X)
    # equal allocation: 2 per cluster; closest to (1,0): rows 0 and 2; closest to (0,1): rows 4 and 6
    assert sorted(picked.indices.tolist()) == [0, 2, 4, 6]
    # a cluster with one member gives it and the rest is redistributed: exact budget, no duplicate
    labels2 = np.array([0, 0, 0, 0, 0, 0, 1])
    picked = fn(n=7, budget=5, random_state=0, labels=labels2, centroids=C, embeddings=X)
    assert len(set(picked.indices.tolist())) == 5 and 6 in picked.indices


def naive_closest(X, C, labels, counts):
    out = []
    for c, m in enumerate(counts):
        rows = np.flatnonzero(labels == c)
        d = [1 - float(X[i] @ (C[c] / np.linalg.norm(C[c]))) for i in rows]
        order = sorted(range(len(rows)), key=lambda j: (d[j], rows[j]))
        out += [int(rows[j]) for j in order[:m]]
    return sorted(out)


@pytest.mark.parametrize("allocation", ["equal", "proportional"])
def test_methods_invariants_and_reference(rng, allocation):
    n, k, budget = 300, 7, 60
    X = unit(rng.normal(size=(n, 8)))
    labels = rng.integers(0, k, n)
    C = np.stack([X[labels == c].mean(axis=0) for c in range(k)])
    closest = get_method("kmeans-closest").fn(
        n=n, budget=budget, random_state=1, labels=labels, centroids=C, embeddings=X, allocation=allocation
    )
    counts = np.bincount(labels[closest.indices], minlength=k)
    assert sorted(closest.indices.tolist()) == naive_closest(X, C, labels, counts)
    for name, extra in (("kmeans-random", {}), ("kmeans-closest", {"centroids": C, "embeddings": X})):
        fn = get_method(name).fn
        a = fn(n=n, budget=budget, random_state=3, labels=labels, allocation=allocation, **extra).indices
        b = fn(n=n, budget=budget, random_state=3, labels=labels, allocation=allocation, **extra).indices
        assert len(a) == budget and len(np.unique(a)) == budget
        np.testing.assert_array_equal(a, b)
        if allocation == "equal":
            per = np.bincount(labels[a], minlength=k)
            assert per.max() - per.min() <= 1


def test_kmeans_random_is_uniform_inside_clusters():
    labels = np.repeat([0, 1], [10, 90])
    hits = np.zeros(100)
    fn = get_method("kmeans-random").fn
    for seed in range(400):
        hits[fn(n=100, budget=10, random_state=seed, labels=labels).indices] += 1
    # equal allocation: 5 of 10 in cluster 0 (p=0.5), 5 of 90 in cluster 1 (p~0.056)
    assert abs(hits[:10].mean() / 400 - 0.5) < 0.05 and abs(hits[10:].mean() / 400 - 5 / 90) < 0.01


def test_bad_parameters():
    with pytest.raises(InvalidParameterError, match="allocation"):
        get_method("kmeans-random").fn(n=4, budget=2, random_state=0, labels=np.zeros(4, int), allocation="x")
    with pytest.raises(InvalidParameterError, match="embeddings"):
        get_method("kmeans-closest").fn(
            n=4,
            budget=2,
            random_state=0,
            labels=np.zeros(4, int),
            centroids=np.ones((1, 3)),
            embeddings=np.ones((4, 2)),
        )
