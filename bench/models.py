#!/usr/bin/env python3
"""Measures two OpenAI-compatible servers holding the same GGUF file: single-stream
generation, time to first token on a 512-token prompt, aggregate throughput of 4 streams;
and embeddings against sentence-transformers. Prints one JSON object.

    models.py WARD_URL WARD_KEY REFERENCE_URL MINILM_DIR
"""

import json
import statistics
import sys
import threading
import time

import openai

WARD_URL, WARD_KEY, REFERENCE_URL, MINILM_DIR = sys.argv[1:5]
RUNS = 3
# Words the benchmark model's vocabulary holds whole, so that N words are N tokens.
WORDS = ("the and of to in is it that was for on are with as be at by this have from or one "
         "had not but what all were when we there can an your which their said if do will "
         "each about how up out them then she many some so these would other into has more "
         "her two like him see time could no make than first been its who now people my "
         "made over did down only way find use may water long little very after words").split()


def prompt_of(tokens, start=0):
    """`tokens` words, beginning at word `start` (another start, another prompt)."""
    return " ".join(WORDS[(start + i) % len(WORDS)] for i in range(tokens))


def stream(client, model, prompt, max_tokens, seed, temperature=0.0):
    """(seconds to the first token, seconds from first to last, tokens generated)."""
    start = time.perf_counter()
    first = None
    pieces = 0
    usage = None
    for chunk in client.completions.create(
        model=model, prompt=prompt, max_tokens=max_tokens, temperature=temperature, seed=seed,
        stream=True, stream_options={"include_usage": True},
    ):
        if chunk.choices and chunk.choices[0].text:
            pieces += 1
            if first is None:
                first = time.perf_counter()
        if getattr(chunk, "usage", None):
            usage = chunk.usage
    end = time.perf_counter()
    generated = usage.completion_tokens if usage else pieces
    first = first or end
    return first - start, end - first, generated


# Sampled (seeded) rather than greedy: a random-weight model's likeliest token soon ends a
# completion on some prompts, which would measure a stream's end rather than its speed.
def decode_rate(client, model):
    rates = []
    for run in range(RUNS):
        _, decoding, generated = stream(client, model, prompt_of(16, run), 128, 100 + run, 0.8)
        if generated > 1 and decoding > 0:
            rates.append((generated - 1) / decoding)
    return statistics.median(rates)


def first_token(client, model):
    # Each run's prompt begins differently: no server may answer from a cached prefix.
    return statistics.median(
        stream(client, model, prompt_of(512, 7 * run + 1), 1, 200 + run)[0] for run in range(RUNS)
    )


def aggregate(client, model, streams):
    totals = [0] * streams

    def one(index):
        totals[index] = stream(client, model, prompt_of(16, index), 128, 300 + index, 0.8)[2]

    start = time.perf_counter()
    threads = [threading.Thread(target=one, args=(index,)) for index in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(totals) / (time.perf_counter() - start)


def sentences(count):
    return [f"{prompt_of(8 + index % 17)} number {index}" for index in range(count)]


def main():
    ward = openai.OpenAI(base_url=WARD_URL + "/v1", api_key=WARD_KEY, max_retries=0, timeout=600)
    reference = openai.OpenAI(base_url=REFERENCE_URL + "/v1", api_key="none", max_retries=0, timeout=600)
    # Warm both: the model loaded, its pages in memory.
    stream(ward, "bench", prompt_of(8), 8, 1)
    reference_model = reference.models.list().data[0].id
    stream(reference, reference_model, prompt_of(8), 8, 1)
    result = {
        "ward_decode": decode_rate(ward, "bench"),
        "reference_decode": decode_rate(reference, reference_model),
        "ward_ttft_512": first_token(ward, "bench"),
        "reference_ttft_512": first_token(reference, reference_model),
        "ward_aggregate_4": aggregate(ward, "bench", 4),
    }
    # Embeddings: 640 sentences in requests of 32, as sentence-transformers batches them;
    # three rounds, each Ward then sentence-transformers, and the median of each.
    import torch
    from sentence_transformers import SentenceTransformer
    torch.set_num_threads(int(sys.argv[5]) if len(sys.argv) > 5 else torch.get_num_threads())
    model = SentenceTransformer(MINILM_DIR, device="cpu")
    texts = sentences(640)
    ward.embeddings.create(model="minilm", input=texts[:32])
    model.encode(texts[:32], batch_size=32)
    ward_rates, reference_rates = [], []
    for _ in range(3):
        start = time.perf_counter()
        for offset in range(0, len(texts), 32):
            ward.embeddings.create(model="minilm", input=texts[offset:offset + 32])
        ward_rates.append(len(texts) / (time.perf_counter() - start))
        start = time.perf_counter()
        model.encode(texts, batch_size=32)
        reference_rates.append(len(texts) / (time.perf_counter() - start))
    result["ward_sentences_per_second"] = statistics.median(ward_rates)
    result["reference_sentences_per_second"] = statistics.median(reference_rates)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
