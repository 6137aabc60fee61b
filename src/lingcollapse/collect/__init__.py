"""Collection: a causal LM streamed over a packed split becomes statistics files."""
