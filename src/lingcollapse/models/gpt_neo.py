"""The paper's architecture (Appendix B, Table 2): GPT-Neo causal LMs of width × depth.

Built as Hugging Face ``GPTNeoForCausalLM`` so runs load anywhere and the authors'
released checkpoints (``rhubarbwu/TinyStories-12x1024_10L`` …) load the same way.
"""

from __future__ import annotations

from lingcollapse.errors import UserError, did_you_mean

PAPER_WIDTHS = (64, 128, 256, 512, 768, 1024)
PAPER_DEPTHS = (1, 2, 4, 8, 12)
# Table 3: batch sizes on one A100 (40 GB), by depth then width.
TABLE3_BATCH = {
    1: dict.fromkeys(PAPER_WIDTHS, 16),
    2: {**dict.fromkeys(PAPER_WIDTHS, 16), 1024: 8},
    4: dict.fromkeys(PAPER_WIDTHS, 8),
    8: {64: 8, 128: 8, 256: 8, 512: 4, 768: 4, 1024: 4},
    12: dict.fromkeys(PAPER_WIDTHS, 4),
}


# The authors' time limit per epoch on one A100 (40 GB), in hours, by depth then width
# (their batch-train.sh; Appendix C: "up to 8 hours per epoch").
PAPER_HOURS_PER_EPOCH = {
    1: dict.fromkeys(PAPER_WIDTHS, 2),
    2: {**dict.fromkeys(PAPER_WIDTHS, 2), 1024: 3},
    4: {**dict.fromkeys(PAPER_WIDTHS, 3), 1024: 4},
    8: {64: 4, 128: 4, 256: 4, 512: 4, 768: 5, 1024: 6},
    12: {64: 5, 128: 5, 256: 6, 512: 6, 768: 7, 1024: 8},
}
PAPER_COLLECT_HOURS = 6  # Appendix D: "one pass over the train set … up to 6 hours"


def check_size(width: int, depth: int, allow_any_size: bool = False) -> None:
    """The paper's grid only, unless asked otherwise (tiny models for CPU demos)."""
    if allow_any_size:
        if width < 1 or depth < 1:
            raise UserError(f"width and depth must be positive, not {width}×{depth}")
        return
    for name, value, allowed in (("width", width, PAPER_WIDTHS), ("depth", depth, PAPER_DEPTHS)):
        if value not in allowed:
            hint = did_you_mean(str(value), [str(a) for a in allowed], str)
            raise UserError(
                f"unknown {name} {value}: the paper's are {allowed}{hint} "
                "(--allow-any-size for other sizes)"
            )


def heads_for(width: int) -> int:
    """16 heads as in Table 2; fewer for tiny widths (the largest power of 2 dividing it)."""
    heads = 16
    while heads > 1 and width % heads:
        heads //= 2
    return heads


def gpt_neo_config(
    width: int,
    depth: int,
    vocab_size: int,
    max_positions: int = 2048,
    eos_token_id: int = 50256,
    allow_any_size: bool = False,
):
    """Table 2: alternating global/local attention (window 256), gelu_new, no dropout."""
    from transformers import GPTNeoConfig

    check_size(width, depth, allow_any_size)
    pattern = ["global", "local"]
    types = [[pattern, depth // 2]] + ([[["global"], 1]] if depth % 2 else [])
    return GPTNeoConfig(
        vocab_size=vocab_size,
        hidden_size=width,
        num_layers=depth,
        num_heads=heads_for(width),
        attention_types=types,
        window_size=256,
        activation_function="gelu_new",
        embed_dropout=0.0,
        attention_dropout=0.0,
        resid_dropout=0.0,
        intermediate_size=None,
        max_position_embeddings=max(max_positions, 2048),
        initializer_range=0.02,
        layer_norm_epsilon=1e-5,
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
        use_cache=True,
    )
