"""Model architectures: the paper's GPT-Neo grid (Appendix B)."""
