#!/usr/bin/env python3
"""Writes a random-weight GGUF model of the llama architecture, for tests and benchmarks.

The weights are noise, but everything else is what a real model has: a SentencePiece-style
vocabulary with byte fallback, a chat template, and the tensors llama.cpp loads for
`general.architecture = llama`. Same arguments, same file.

Usage: make-test-model.py OUT.gguf [--size tiny|1b] [--type f32|q8_0] [--seed N]
Needs the `gguf` and `numpy` packages (PyPI).
"""

import argparse

import gguf
import numpy as np

SIZES = {
    # name: (embedding, layers, heads, kv heads, feed-forward, context)
    "tiny": (64, 2, 4, 2, 128, 512),
    "1b": (2048, 16, 32, 8, 8192, 4096),
}

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

WORDS = [
    "the", "a", "and", "of", "to", "in", "is", "it", "that", "was", "for", "on", "are",
    "with", "as", "be", "at", "by", "this", "have", "from", "or", "one", "had", "not",
    "but", "what", "all", "were", "when", "we", "there", "can", "an", "your", "which",
    "their", "said", "if", "do", "will", "each", "about", "how", "up", "out", "them",
    "then", "she", "many", "some", "so", "these", "would", "other", "into", "has", "more",
    "her", "two", "like", "him", "see", "time", "could", "no", "make", "than", "first",
    "been", "its", "who", "now", "people", "my", "made", "over", "did", "down", "only",
    "way", "find", "use", "may", "water", "long", "little", "very", "after", "words",
    "called", "just", "where", "most", "know", "get", "through", "back", "much", "go",
    "good", "new", "write", "our", "me", "man", "too", "any", "day", "same", "right",
    "look", "think", "also", "around", "another", "came", "come", "work", "three", "word",
    "must", "because", "does", "part", "even", "place", "well", "such", "here", "take",
    "why", "things", "help", "put", "years", "different", "away", "again", "off", "went",
    "old", "number", "great", "tell", "men", "say", "small", "every", "found", "still",
    "between", "name", "should", "home", "big", "give", "air", "line", "set", "own",
    "under", "read", "last", "never", "us", "left", "end", "along", "while", "might",
    "next", "sound", "below", "saw", "something", "thought", "both", "few", "those",
    "always", "looked", "show", "large", "often", "together", "asked", "house", "don",
    "world", "going", "want", "school", "important", "until", "form", "food", "keep",
    "children", "feet", "land", "side", "without", "boy", "once", "animals", "life",
    "enough", "took", "sometimes", "four", "head", "above", "kind", "began", "almost",
    "live", "page", "got", "earth", "need", "far", "hand", "high", "year", "mother",
    "light", "parts", "country", "father", "let", "night", "following", "picture",
    "being", "study", "second", "eyes", "soon", "times", "story", "boys", "since",
    "white", "days", "ever", "paper", "hard", "near", "sentence", "better", "best",
    "across", "during", "today", "others", "however", "sure", "means", "knew", "try",
    "told", "young", "miles", "sun", "ways", "thing", "whole", "hear", "example",
    "heard", "several", "change", "answer", "room", "sea", "against", "top", "turned",
    "learn", "point", "city", "play", "toward", "five", "using", "himself", "usually",
    "json", "true", "false", "null", "name", "value", "items", "id", "type", "city",
]


def vocabulary():
    """(pieces, scores, types): control tokens, 256 byte-fallback tokens, then pieces."""
    pieces = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    types = [
        gguf.TokenType.UNKNOWN,
        gguf.TokenType.CONTROL,
        gguf.TokenType.CONTROL,
        gguf.TokenType.CONTROL,
        gguf.TokenType.CONTROL,
    ]
    for byte in range(256):
        pieces.append(f"<0x{byte:02X}>")
        types.append(gguf.TokenType.BYTE)
    seen = set(pieces)
    printable = [chr(code) for code in range(33, 127)]
    candidates = ["\u2581"] + printable + ["\u2581" + c for c in printable]
    candidates += ["\u2581" + word for word in WORDS] + WORDS
    for piece in candidates:
        if piece not in seen:
            seen.add(piece)
            pieces.append(piece)
            types.append(gguf.TokenType.NORMAL)
    # Longer pieces score higher, so the tokenizer prefers whole words.
    scores = [0.0 if t != gguf.TokenType.NORMAL else float(len(p)) for p, t in zip(pieces, types)]
    return pieces, scores, types


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--type", choices=["f32", "q8_0"], default="f32",
                        help="storage of the matrices (norms stay f32)")
    args = parser.parse_args()
    embd, layers, heads, kv_heads, ff, context = SIZES[args.size]
    head_dim = embd // heads
    pieces, scores, types = vocabulary()
    rng = np.random.default_rng(args.seed)

    def matrix(*shape):
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)

    writer = gguf.GGUFWriter(args.out, "llama")
    writer.add_name(f"ward-test-{args.size}")
    writer.add_context_length(context)
    writer.add_embedding_length(embd)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    if args.type == "q8_0":
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    else:
        writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(pieces)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(4)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML)

    def add(name, *shape):
        data = matrix(*shape)
        if args.type == "q8_0":
            quantized = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, quantized, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, data)

    vocab = len(pieces)
    add("token_embd.weight", vocab, embd)
    writer.add_tensor("output_norm.weight", np.ones(embd, dtype=np.float32))
    add("output.weight", vocab, embd)
    for block in range(layers):
        prefix = f"blk.{block}."
        writer.add_tensor(prefix + "attn_norm.weight", np.ones(embd, dtype=np.float32))
        add(prefix + "attn_q.weight", embd, embd)
        add(prefix + "attn_k.weight", kv_heads * head_dim, embd)
        add(prefix + "attn_v.weight", kv_heads * head_dim, embd)
        add(prefix + "attn_output.weight", embd, embd)
        writer.add_tensor(prefix + "ffn_norm.weight", np.ones(embd, dtype=np.float32))
        add(prefix + "ffn_gate.weight", ff, embd)
        add(prefix + "ffn_up.weight", ff, embd)
        add(prefix + "ffn_down.weight", embd, ff)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
