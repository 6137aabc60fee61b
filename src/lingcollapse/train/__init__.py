"""Training the paper's models (Appendix C), resumable."""
