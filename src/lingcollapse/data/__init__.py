"""Stage 1 of the pipeline: corpora → tokenizer → packed data dir.

- :mod:`.stories` (+ :mod:`.lexicon`): the embedded, seeded children's-story corpus;
- :mod:`.local`, :mod:`.tinystories`: text files and the paper's corpus;
- :mod:`.tokenizer`: a hub/local HF tokenizer, or a byte-level BPE trained here;
- :mod:`.packing`: GPT packing and run_clm's ``group_texts``, streamed to ``.npy``;
- :mod:`.prepare`: the whole ``data prepare`` job, written atomically.
"""
