import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import top_k_accuracy_score

from mec_eval.metrics.classification import ClassificationEvaluator, topk_accuracy
from mec_eval.tasks.knn import knn_scores, knn_votes


def _loop_knn(train, labels, test, classes, k, t):
    """Independent formulation: per test row, sort all cosine similarities, weight the top k."""
    out = np.zeros((len(test), classes))
    tn = train / np.linalg.norm(train, axis=1, keepdims=True)
    for i, row in enumerate(test):
        sims = tn @ (row / np.linalg.norm(row))
        for j in np.argsort(-sims, kind="stable")[:k]:
            out[i, labels[j]] += np.exp(sims[j] / t)
    return out


def test_knn_scores_match_independent_loop():
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(60, 8)), rng.normal(size=(13, 8))
    labels = rng.integers(0, 4, size=60)
    ours = knn_scores(torch.tensor(train), torch.tensor(labels), torch.tensor(test), 4, k=5, temperature=0.07, chunk=4)
    np.testing.assert_allclose(ours.numpy(), _loop_knn(train, labels, test, 4, 5, 0.07), rtol=1e-4)


def test_knn_votes_of_interleaved_chunks_are_the_bits_of_one_pass():
    """What each of N processes scores (every N-th chunk) is exactly what one process scores for those rows."""
    rng = np.random.default_rng(4)
    train, test = torch.tensor(rng.normal(size=(80, 8))), torch.tensor(rng.normal(size=(23, 8)))
    labels = torch.tensor(rng.integers(0, 5, size=80))
    whole = knn_scores(train, labels, test, 5, k=7, temperature=0.1, chunk=4)
    chunks = [range(s, min(s + 4, 23)) for s in range(0, 23, 4)]
    train_n, test_n = F.normalize(train.float(), dim=1), F.normalize(test.float(), dim=1)
    for share in (chunks[0::2], chunks[1::2]):  # rank 0's and rank 1's chunks of 2 processes
        for rows, votes in zip(share, knn_votes(train_n, labels, test_n, 5, 7, 0.1, share)):
            assert torch.equal(votes, whole[rows.start:rows.stop])


def test_knn_recovers_separated_clusters():
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(3, 16)) * 5
    train_y = np.repeat(np.arange(3), 20)
    test_y = np.repeat(np.arange(3), 5)
    train = centers[train_y] + rng.normal(size=(60, 16))
    test = centers[test_y] + rng.normal(size=(15, 16))
    scores = knn_scores(torch.tensor(train), torch.tensor(train_y), torch.tensor(test), 3, k=20, temperature=0.07)
    assert (scores.argmax(1).numpy() == test_y).all()


def test_topk_matches_sklearn():
    rng = np.random.default_rng(2)
    scores, target = rng.normal(size=(200, 10)), rng.integers(0, 10, size=200)
    for k in (1, 3, 5):
        ours = topk_accuracy(torch.tensor(scores), torch.tensor(target), k)
        assert ours == pytest.approx(100 * top_k_accuracy_score(target, scores, k=k, labels=np.arange(10)))


def test_evaluator_accumulates_batches_like_one_shot():
    rng = np.random.default_rng(3)
    scores, target = torch.tensor(rng.normal(size=(50, 7))), torch.tensor(rng.integers(0, 7, size=50))
    ev = ClassificationEvaluator()
    for s in range(0, 50, 16):
        ev.process(scores[s:s + 16], target[s:s + 16])
    once = {"top1": topk_accuracy(scores, target, 1), "top5": topk_accuracy(scores, target, 5)}
    assert ev.evaluate() == pytest.approx(once)
    ev.reset()
    with pytest.raises(ValueError, match="before any process"):
        ev.evaluate()
    with pytest.raises(ValueError):
        topk_accuracy(scores, target[:3], 1)
