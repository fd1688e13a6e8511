"""Chapter 01: language-model math (n-gram models, cross-entropy and perplexity, sampling)."""
from .metrics import (bits_per_token, cross_entropy, cross_entropy_from_probs, log_softmax,
                      perplexity_from_logprobs, perplexity_from_loss)
from .ngram import BOS, EOS, UNK, NGramLM, ngrams, split_sentences
from .sampling import (apply_temperature, filter_logits, greedy_next, sample_next, top_k_filter,
                       top_p_filter)

__all__ = [
    "BOS", "EOS", "UNK", "NGramLM", "ngrams", "split_sentences",
    "bits_per_token", "cross_entropy", "cross_entropy_from_probs", "log_softmax",
    "perplexity_from_logprobs", "perplexity_from_loss",
    "apply_temperature", "filter_logits", "greedy_next", "sample_next", "top_k_filter", "top_p_filter",
]
