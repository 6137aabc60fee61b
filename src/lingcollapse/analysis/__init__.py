"""Analysis across runs (paper §3.8): results tables, correlations with
generalization, figures, per-token inspection and the HTML report."""

# Permutation-test resamples of `analyze` (10⁵, seeded); here, not in
# .correlation, so the command line's parser needs neither pandas nor SciPy.
DEFAULT_PERMUTATIONS = 100_000
