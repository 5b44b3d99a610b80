#!/usr/bin/env python3
"""Writes the reference embeddings the embedding tests compare Ward's with: the
sentence-transformers package's own output for a model directory and a file of sentences.

    embedding-reference.py MODEL_DIR SENTENCES.txt OUT.json

Needs `pip install sentence-transformers` (not part of the test tools: the output is kept
as test data, crates/ward/tests/data/all-minilm-l6-v2.json)."""

import json
import sys

from sentence_transformers import SentenceTransformer

model_dir, sentences_file, out = sys.argv[1:4]
model = SentenceTransformer(model_dir, device="cpu")
sentences = [line.rstrip("\n") for line in open(sentences_file, encoding="utf-8") if line.strip()]
vectors = model.encode(sentences, normalize_embeddings=True)
with open(out, "w", encoding="utf-8") as file:
    json.dump(
        {
            "model": "all-MiniLM-L6-v2",
            "sentences": sentences,
            "embeddings": [[round(float(x), 7) for x in vector] for vector in vectors],
        },
        file,
    )
