"""The math of the metrics, on plain tensors (features are rows of an (N, D) tensor); no model here.

  frechet_distance           Heusel 2017 eq. 6: |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))
  kernel_inception_distance  Binkowski 2018: unbiased MMD^2 with k(x, y) = (x.y / D + 1)^3
  precision_recall           Kynkaanniemi 2019 eq. 1-2: k-NN hyperspheres of each set, k = 3
  class_histogram, kl_to_uniform, hungarian_accuracy (Kuhn 1955), bits_per_dim
"""
from __future__ import annotations

import math

import torch


def mean_cov(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64."""
    x = features.double()
    mean = x.mean(0)
    centred = x - mean
    return mean, centred.T @ centred / (x.shape[0] - 1)


def psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix by eigen-decomposition."""
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(mean1: torch.Tensor, cov1: torch.Tensor, mean2: torch.Tensor, cov2: torch.Tensor) -> float:
    """Heusel 2017 eq. 6, Frechet distance of two Gaussians: |m1-m2|^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2)).

    tr((C1 C2)^(1/2)) = tr((C1^(1/2) C2 C1^(1/2))^(1/2)): the inner matrix is symmetric PSD, so its
    eigenvalues are real and >= 0 (up to rounding, clamped), which avoids sqrtm's complex parts.
    """
    mean1, cov1, mean2, cov2 = (t.double() for t in (mean1, cov1, mean2, cov2))
    root1 = psd_sqrt(cov1)
    inner = root1 @ cov2 @ root1
    trace_sqrt = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0).sqrt().sum()
    value = (mean1 - mean2).pow(2).sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * trace_sqrt
    return max(value.item(), 0.0)


def fid_from_features(features1: torch.Tensor, features2: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N1, D) and (N2, D)."""
    return frechet_distance(*mean_cov(features1), *mean_cov(features2))


def kernel_inception_distance(features1: torch.Tensor, features2: torch.Tensor, subsets: int = 50,
                              subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Binkowski 2018: unbiased MMD^2 with the cubic polynomial kernel, mean and std over random subsets."""
    x_all, y_all = features1.double(), features2.double()
    dim = x_all.shape[1]
    m = min(subset_size, len(x_all), len(y_all))
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        x = x_all[torch.randperm(len(x_all), generator=generator)[:m]]            # (m, D)
        y = y_all[torch.randperm(len(y_all), generator=generator)[:m]]            # (m, D)
        k_xx, k_yy = (x @ x.T / dim + 1) ** 3, (y @ y.T / dim + 1) ** 3          # (m, m) each
        k_xy = (x @ y.T / dim + 1) ** 3
        off_diagonal = m * (m - 1)
        mmd = ((k_xx.sum() - k_xx.diagonal().sum()) / off_diagonal
               + (k_yy.sum() - k_yy.diagonal().sum()) / off_diagonal - 2 * k_xy.mean())
        values.append(mmd.item())
    values = torch.tensor(values)
    return values.mean().item(), (values.std().item() if subsets > 1 else 0.0)


def kth_neighbour_radii(features: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """Distance from each point (N, D) to its k-th nearest other point of the same set, shape (N,)."""
    radii = []
    for start in range(0, len(features), chunk):
        distances = torch.cdist(features[start:start + chunk], features)         # (chunk, N)
        radii.append(distances.kthvalue(k + 1, dim=1).values)                     # +1: the point itself
    return torch.cat(radii)


def fraction_inside(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 2048) -> float:
    """Fraction of queries (M, D) inside at least one hypersphere (centres (N, D), radii (N,))."""
    inside = []
    for start in range(0, len(queries), chunk):
        distances = torch.cdist(queries[start:start + chunk], centres)            # (chunk, N)
        inside.append((distances <= radii[None]).any(1))
    return torch.cat(inside).float().mean().item()


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Kynkaanniemi 2019 eq. 1-2: precision = share of fakes on the real manifold, recall = the reverse."""
    real, fake = real.float(), fake.float()
    precision = fraction_inside(fake, real, kth_neighbour_radii(real, k))
    recall = fraction_inside(real, fake, kth_neighbour_radii(fake, k))
    return precision, recall


def class_histogram(labels: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """Share of each class among predicted labels (N,), shape (num_classes,)."""
    return torch.bincount(labels.long(), minlength=num_classes).double() / max(len(labels), 1)


def kl_to_uniform(histogram: torch.Tensor) -> float:
    """KL(p || uniform) = log K - H(p), in nats; 0 for a perfectly balanced histogram."""
    p = histogram.double()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return math.log(len(p)) - entropy.item()


def hungarian_accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> tuple[float, dict]:
    """Accuracy of cluster ids under the best one-to-one matching to labels (Kuhn 1955, via scipy)."""
    from scipy.optimize import linear_sum_assignment
    n_pred, n_true = int(predicted.max()) + 1, int(labels.max()) + 1
    size = max(n_pred, n_true)
    counts = torch.zeros(size, size, dtype=torch.long)                            # (cluster, label)
    counts.index_put_((predicted.long(), labels.long()), torch.ones(len(labels), dtype=torch.long), accumulate=True)
    rows, cols = linear_sum_assignment(counts.numpy(), maximize=True)
    matched = counts[rows, cols].sum().item()
    return matched / len(labels), {int(r): int(c) for r, c in zip(rows, cols)}


def bits_per_dim(nats_per_image: float, dims: int) -> float:
    """Negative log-likelihood in bits per dimension: nats / (C * H * W * ln 2)."""
    return nats_per_image / (dims * math.log(2))
