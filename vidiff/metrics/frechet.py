"""The Fréchet distance between Gaussians fitted to two sets of features (as in FID/FVD).

d^2 = |mu1 - mu2|^2 + tr(C1) + tr(C2) - 2 tr((C1 C2)^(1/2)).

The trace of the matrix square root is computed from symmetric eigendecompositions:
(C1 C2)^(1/2) has the eigenvalues of S C2 S with S = C1^(1/2), a symmetric positive
semi-definite matrix, so tr((C1 C2)^(1/2)) = sum(sqrt(eigvalsh(S C2 S))). Unlike
scipy.linalg.sqrtm on the non-symmetric product, this needs no eps offset for singular
(rank-deficient) covariances and never produces imaginary parts.

`distance(features1, features2)` gives the same number straight from features. When a set
has fewer samples than dimensions it works in sample space, which is exact and much cheaper:
with A, B the centred features divided by sqrt(N - 1), C1 = A^T A and C2 = B^T B, the
nonzero eigenvalues of C1 C2 are the squared singular values of A B^T, so
tr((C1 C2)^(1/2)) is the nuclear norm of the [N, M] matrix A B^T.

Sample sizes: the covariance of N samples of D features has rank at most N - 1. The
distance stays well defined below N = D, but it is biased (it shrinks as N grows), so only
compare numbers computed with the same N; the literature uses thousands of samples
(FID: 50k images; FVD: 2048 videos, at least several hundred).
"""

from typing import Tuple

import numpy as np

from vidiff.errors import check


def _as_features(features: np.ndarray) -> np.ndarray:
  """Checked float64 [N, D] features, N >= 2."""
  features = np.asarray(features, np.float64)
  check(features.ndim == 2, f'features must be [N, D], got shape {features.shape}.')
  check(len(features) >= 2, f'a covariance needs at least 2 samples, got {len(features)}; '
        'pass more videos (FVD is meaningful with hundreds).')
  check(np.isfinite(features).all(), 'features contain NaN or inf; check the input videos.')
  return features


def statistics(features: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """[N, D] features -> (mean [D], covariance [D, D]), float64, unbiased (N - 1)."""
  features = _as_features(features)
  d = features.shape[1]
  return features.mean(axis=0), np.cov(features, rowvar=False).reshape(d, d)


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
  """The symmetric square root of a PSD matrix (negative rounding eigenvalues -> 0)."""
  w, v = np.linalg.eigh((cov + cov.T) / 2)
  return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(cov1: np.ndarray, cov2: np.ndarray) -> float:
  """tr((cov1 cov2)^(1/2)) for PSD [D, D] matrices."""
  s = _psd_sqrt(cov1)
  m = s @ cov2 @ s
  return float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray,
                     cov2: np.ndarray) -> float:
  """The squared Fréchet (2-Wasserstein) distance between N(mu1, cov1) and N(mu2, cov2).

  Args:
    mu1, mu2: means [D].
    cov1, cov2: covariances [D, D].

  Returns:
    d^2 >= 0 as a Python float (tiny negative rounding is clipped to 0).
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
  check(mu1.shape == mu2.shape and cov1.shape == cov2.shape == mu1.shape * 2,
        f'statistics do not match: means {mu1.shape}, {mu2.shape}; covariances '
        f'{cov1.shape}, {cov2.shape}; compute both with the same feature extractor.')
  return _combine(mu1 - mu2, np.trace(cov1), np.trace(cov2), trace_sqrt_product(cov1, cov2))


def _combine(diff: np.ndarray, trace1: float, trace2: float, trace_sqrt: float) -> float:
  """|diff|^2 + tr C1 + tr C2 - 2 tr((C1 C2)^(1/2)), clipped at 0."""
  return max(float(diff @ diff + trace1 + trace2 - 2 * trace_sqrt), 0.0)


def distance(features1: np.ndarray, features2: np.ndarray) -> float:
  """Fréchet distance between Gaussians fitted to features [N, D] and [M, D].

  Equals `frechet_distance(*statistics(features1), *statistics(features2))`; uses the
  sample-space form (module docstring) when min(N, M) < D.
  """
  f1, f2 = _as_features(features1), _as_features(features2)
  check(f1.shape[1] == f2.shape[1], f'feature sizes differ: {f1.shape[1]} vs {f2.shape[1]}; '
        'compute both sets with the same feature extractor.')
  if min(len(f1), len(f2)) >= f1.shape[1]:
    return frechet_distance(*statistics(f1), *statistics(f2))
  a = (f1 - f1.mean(axis=0)) / np.sqrt(len(f1) - 1)
  b = (f2 - f2.mean(axis=0)) / np.sqrt(len(f2) - 1)
  trace_sqrt = np.linalg.svd(a @ b.T, compute_uv=False).sum()
  return _combine(f1.mean(axis=0) - f2.mean(axis=0), np.sum(a * a), np.sum(b * b), trace_sqrt)
