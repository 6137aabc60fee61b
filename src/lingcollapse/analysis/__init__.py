"""Analysis across runs (DESIGN §2, §3.8): results tables, correlations with
generalization, figures, per-token inspection and the HTML report."""
