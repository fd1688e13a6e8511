"""Chapter 01: word n-gram language models: counting, MLE, add-k and interpolated Kneser-Ney smoothing.

An order-``n`` model predicts each word from the ``n-1`` words before it. Each sentence is padded
with ``n-1`` ``<s>`` symbols on the left and one ``</s>`` on the right, so that the model also
predicts where a sentence starts and ends. Words seen fewer than ``min_count`` times in training
(and every word never seen) become ``<unk>``. The model predicts over ``vocab``: the known words,
``<unk>`` and ``</s>`` (never ``<s>``).

Interpolated Kneser-Ney (Chen & Goodman 1998, one discount D)::

    P(w | h) = max(c(h w) - D, 0) / c(h)  +  D * N1+(h .) / c(h) * P(w | h minus its first word)

with raw counts at the top order and *continuation counts* ``N1+(. h w)`` (how many distinct words
precede ``h w``) at lower orders, except for n-grams starting with ``<s>``, which nothing can
precede, so they keep their raw counts (as KenLM does). Below the unigrams sits the uniform
distribution ``1/|vocab|``. A context never seen in training gets weight 1 on its lower order.
"""
from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from typing import Iterable, Optional, Sequence

import torch

from .metrics import perplexity_from_logprobs
from .sampling import sample_next

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
SMOOTHINGS = ("mle", "add_k", "kneser_ney")
Context = tuple[str, ...]
Table = dict[Context, Counter]


def split_sentences(text: str) -> list[list[str]]:
    """Lower-case ``text``, cut it into sentences at . ! ? or line breaks, and into word tokens."""
    sentences = re.split(r"(?<=[.!?])\s+|\n+", text.lower())
    return [words for s in sentences if (words := re.findall(r"[a-z0-9']+|[.,!?;:]", s))]


def ngrams(sentence: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """The n-grams of ``sentence`` padded with ``n-1`` ``<s>`` and one ``</s>``: one per predicted word."""
    padded = [BOS] * (n - 1) + list(sentence) + [EOS]
    return list(zip(*(padded[j:] for j in range(n))))


class NGramLM:
    """A word n-gram language model with MLE, add-k or interpolated Kneser-Ney probabilities."""

    def __init__(self, n: int, smoothing: str = "kneser_ney", k: float = 1.0,
                 discount: float = 0.75, min_count: int = 1):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if smoothing not in SMOOTHINGS:
            raise ValueError(f"smoothing must be one of {SMOOTHINGS}, got {smoothing!r}")
        if smoothing == "add_k" and not k > 0:
            raise ValueError(f"add-k smoothing needs k > 0, got {k!r} (k=0 is smoothing='mle')")
        if smoothing == "kneser_ney" and not 0 < discount <= 1:
            raise ValueError(f"Kneser-Ney discount must be in (0, 1], got {discount!r}")
        if not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be a positive integer, got {min_count!r}")
        self.n, self.smoothing, self.k, self.discount, self.min_count = n, smoothing, k, discount, min_count
        self.vocab: list[str] = []

    # ---------------------------------------------------------------- training
    def fit(self, sentences: Sequence[Sequence[str]]) -> "NGramLM":
        """Count n-grams of every order 1..n in tokenised ``sentences``; return self."""
        sentences = list(sentences)
        freq = Counter()
        for i, sentence in enumerate(sentences):
            if isinstance(sentence, str):
                raise TypeError(f"sentence {i} is a string; pass a list of tokens (see split_sentences)")
            bad = {BOS, EOS} & set(sentence)
            if bad:
                raise ValueError(f"sentence {i} contains the reserved token(s) {sorted(bad)}")
            freq.update(sentence)
        known = sorted(w for w, c in freq.items() if c >= self.min_count and w != UNK)
        self.vocab = known + [UNK, EOS]
        self._known = set(self.vocab) | {BOS}
        # every order-m event is the suffix of one top-order n-gram, so count n-grams once
        grams = Counter()
        for sentence in sentences:
            grams.update(ngrams(self.map_words(sentence), self.n))
        # raw[m][context][word]: how often `word` follows `context` (length m-1) in training
        self.raw_counts: dict[int, Table] = {m: defaultdict(Counter) for m in range(1, self.n + 1)}
        # left[m][(context, word)]: the distinct words seen just before `context word`
        left: dict[int, dict] = {m: defaultdict(set) for m in range(1, self.n)}
        for gram, count in grams.items():
            for m in range(1, self.n + 1):
                context, word = gram[self.n - m:-1], gram[-1]
                self.raw_counts[m][context][word] += count
                if m < self.n:
                    left[m][context, word].add(gram[self.n - m - 1])
        self.kn_counts: dict[int, Table] = {self.n: self.raw_counts[self.n]}
        for m in range(1, self.n):
            table: Table = defaultdict(Counter)
            for (context, word), before in left[m].items():
                starts_with_bos = (context + (word,))[0] == BOS
                table[context][word] = self.raw_counts[m][context][word] if starts_with_bos else len(before)
            self.kn_counts[m] = table
        # context totals c(h), precomputed: summing a unigram table on every call would be slow
        self._raw_totals = {h: sum(c.values()) for h, c in self.raw_counts[self.n].items()}
        self._kn_totals = {(m, h): sum(c.values()) for m, t in self.kn_counts.items() for h, c in t.items()}
        return self

    def with_smoothing(self, smoothing: str, k: Optional[float] = None,
                       discount: Optional[float] = None) -> "NGramLM":
        """A copy that shares this model's counts but smooths differently (no refitting)."""
        other = NGramLM(self.n, smoothing, self.k if k is None else k,
                        self.discount if discount is None else discount, self.min_count)
        settings = ("smoothing", "k", "discount")
        other.__dict__.update({key: v for key, v in self.__dict__.items() if key not in settings})
        return other

    def map_words(self, words: Iterable[str]) -> list[str]:
        """Replace words outside the vocabulary by ``<unk>``."""
        self._check_fitted()
        return [w if w in self._known else UNK for w in words]

    def _check_fitted(self) -> None:
        if not self.vocab:
            raise RuntimeError("this NGramLM is not fitted yet: call fit(sentences) first")

    def _context(self, context: Sequence[str]) -> Context:
        """The last n-1 words of ``context``, left-padded with ``<s>`` at a sentence start."""
        words = self.map_words(context)[-(self.n - 1):] if self.n > 1 else []
        return tuple([BOS] * (self.n - 1 - len(words)) + words)

    # ------------------------------------------------------------- probabilities
    def prob(self, word: str, context: Sequence[str] = ()) -> float:
        """P(word | context), where ``context`` lists the preceding words of the sentence."""
        self._check_fitted()
        (word,), h = self.map_words([word]), self._context(context)
        if word == BOS:
            return 0.0
        if self.smoothing == "kneser_ney":
            return self._kneser_ney(word, h)
        counts, total = self.raw_counts[self.n].get(h), self._raw_totals.get(h, 0)
        if self.smoothing == "mle":  # undefined for an unseen context: no evidence for any word
            return counts[word] / total if total else 0.0
        return ((counts[word] if counts else 0) + self.k) / (total + self.k * len(self.vocab))

    def _kneser_ney(self, word: str, h: Context) -> float:
        """Interpolated Kneser-Ney probability, recursing from context ``h`` down to the uniform."""
        lower = self._kneser_ney(word, h[1:]) if h else 1.0 / len(self.vocab)
        counts = self.kn_counts[len(h) + 1].get(h)
        if not counts:  # unseen context: all the weight goes to the lower order
            return lower
        total, d = self._kn_totals[len(h) + 1, h], self.discount
        return (max(counts[word] - d, 0.0) + d * len(counts) * lower) / total

    def distribution(self, context: Sequence[str] = ()) -> dict[str, float]:
        """P(w | context) for every w in ``vocab``; the values sum to 1."""
        if self.smoothing == "mle" and not self.raw_counts[self.n].get(self._context(context)):
            raise ValueError(f"MLE is undefined after the unseen context {self._context(context)}")
        return {w: self.prob(w, context) for w in self.vocab}

    def logprob(self, sentence: Sequence[str]) -> float:
        """Natural log-probability of a whole sentence (its words and the final ``</s>``)."""
        return sum(self.token_logprobs(sentence))

    def token_logprobs(self, sentence: Sequence[str]) -> list[float]:
        """log P(w_i | w_<i) for every word of ``sentence`` and the final ``</s>`` (chain rule)."""
        words = list(sentence) + [EOS]
        probs = [self.prob(w, words[:i]) for i, w in enumerate(words)]
        return [math.log(p) if p > 0 else -math.inf for p in probs]

    def perplexity(self, sentences: Sequence[Sequence[str]]) -> float:
        """exp of the mean negative log-probability per predicted token (``</s>`` included)."""
        return perplexity_from_logprobs(lp for s in sentences for lp in self.token_logprobs(s))

    # ---------------------------------------------------------------- sampling
    def generate(self, max_words: int = 30, temperature: float = 1.0, top_k: Optional[int] = None,
                 top_p: Optional[float] = None, generator: Optional[torch.Generator] = None,
                 prefix: Sequence[str] = ()) -> list[str]:
        """Sample a sentence word by word (``temperature=0``: greedy) until ``</s>`` or ``max_words``."""
        words = list(prefix)
        while len(words) < max_words:
            probs = torch.tensor(list(self.distribution(words).values()), dtype=torch.float64)
            logits = probs.log()  # log 0 = -inf: impossible words stay impossible
            word = self.vocab[int(sample_next(logits, temperature, top_k, top_p, generator))]
            if word == EOS:
                break
            words.append(word)
        return words
