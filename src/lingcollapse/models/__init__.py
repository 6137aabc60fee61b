"""Model architectures: the paper's GPT-Neo grid (Appendix B, `gpt_neo`), other families
by name (`registry`), and fused attention with GPT-Neo's exact semantics (`attention`)."""
