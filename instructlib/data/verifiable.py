"""Chapter 05: verifiable tasks — instruction families whose answers a program can check.

Chapters 05-09 use them as ground truth for "the model follows the instruction": every family
has a generator of (input, output) pairs, a checker, hand-written training phrasings and
held-out phrasings that are never used for training. Everything is short ASCII English, so
prompt + answer fit a tiny GPT with a 128-token context.

Splits are decided by a stable hash of (family, input), not by the seed: an input that lands in
``test`` for one family is never generated for ``train`` of that family, whatever the seeds.
Lookup families (capitals, antonyms) therefore test facts never seen during instruction tuning;
the model can only answer them if pretraining taught it the facts (see ``CAPITALS``/``ANTONYMS``).

Three evaluation settings: ``make_examples("test", n)`` (seen phrasings, unseen inputs),
``make_examples("test", n, phrasings="heldout")`` (unseen phrasings too), and per family via
``score_by_family``. ``Example`` carries the family label; ``Record`` itself stays flat.

Checking: ``normalize`` strips surrounding whitespace and nothing else; the comparison is then
exact and case-sensitive. Cutting a generation at EOS or at a newline is the generator's job.
"""
from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

from instructlib.data.records import Record

Split = Literal["train", "validation", "test"]
SPLITS: tuple[str, ...] = ("train", "validation", "test")
MAX_INPUT_CHARS = 40
MAX_OUTPUT_CHARS = 30
MAX_PHRASING_CHARS = 72

# Project-written word list (lowercase, 3-6 letters) for the word-list families.
WORDS: tuple[str, ...] = tuple("""
apple bread chair table river stone cloud green house horse tiger lemon candle garden window
forest orange yellow purple silver basket bottle button camera carrot castle cheese circle
coffee cookie cotton dragon farmer flower guitar hammer island jacket kettle ladder letter
mirror monkey needle pencil pepper pillow planet rabbit rocket saddle shovel spider spoon
sugar summer tomato tunnel turtle violin wallet winter wizard yogurt bridge cherry cactus
anchor beach cabin desk drum eagle fence ghost grape honey lamp moon nest ocean owl pearl
queen robot salt shell snow star sun tent train tree wheel wolf zebra boat book cake cat dog
fish frog goat king lion milk rain ring rose ship sock tea toy
""".split())

CAPITALS: dict[str, str] = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid",
    "Portugal": "Lisbon", "Japan": "Tokyo", "China": "Beijing", "Egypt": "Cairo",
    "Kenya": "Nairobi", "Peru": "Lima", "Chile": "Santiago", "Canada": "Ottawa",
    "Russia": "Moscow", "Greece": "Athens", "Norway": "Oslo", "Sweden": "Stockholm",
    "Finland": "Helsinki", "Denmark": "Copenhagen", "Poland": "Warsaw", "Austria": "Vienna",
    "Hungary": "Budapest", "Ireland": "Dublin", "Belgium": "Brussels", "Cuba": "Havana",
    "Thailand": "Bangkok", "Vietnam": "Hanoi", "Iran": "Tehran", "Iraq": "Baghdad",
    "Turkey": "Ankara", "Colombia": "Bogota", "Venezuela": "Caracas", "Ecuador": "Quito",
    "Nigeria": "Abuja", "Ghana": "Accra", "Morocco": "Rabat", "Indonesia": "Jakarta",
    "Philippines": "Manila", "Australia": "Canberra", "Iceland": "Reykjavik",
    "Czechia": "Prague", "Romania": "Bucharest", "Bulgaria": "Sofia", "Serbia": "Belgrade",
    "Croatia": "Zagreb", "Ukraine": "Kyiv", "Lebanon": "Beirut", "Nepal": "Kathmandu",
    "Senegal": "Dakar", "Uganda": "Kampala", "Estonia": "Tallinn", "Latvia": "Riga",
    "Lithuania": "Vilnius",
}

_ANTONYM_PAIRS = """
hot:cold big:small fast:slow up:down happy:sad light:dark early:late high:low full:empty
wet:dry hard:soft rich:poor strong:weak loud:quiet thick:thin long:short win:lose buy:sell
push:pull left:right true:false inside:outside above:below before:after first:last begin:end
day:night black:white north:south east:west give:take love:hate alive:dead clean:dirty
sweet:sour young:old near:far wide:narrow deep:shallow smooth:rough asleep:awake
friend:enemy remember:forget open:shut
"""
ANTONYMS: dict[str, str] = {}
for _pair in _ANTONYM_PAIRS.split():
    _a, _b = _pair.split(":")
    ANTONYMS[_a], ANTONYMS[_b] = _b, _a

# Every word a family can put in an input or output: the corpus builder imports this so that
# the pretraining text contains them (and the facts in CAPITALS / ANTONYMS).
VOCABULARY: tuple[str, ...] = tuple(sorted(set(WORDS) | set(ANTONYMS) | set(CAPITALS)
                                           | set(CAPITALS.values())))


def normalize(text: str) -> str:
    """The only normalisation before exact match: strip surrounding whitespace."""
    return text.strip()


def exact_check(prediction: str, output: str) -> bool:
    """Exact, case-sensitive match after ``normalize`` on both sides."""
    return normalize(prediction) == normalize(output)


@dataclass(frozen=True)
class Family:
    """A verifiable task family: phrasings, an instance generator and a checker."""

    name: str
    train_phrasings: tuple[str, ...]
    heldout_phrasings: tuple[str, ...]
    generator: Callable[[random.Random], tuple[str, str]]
    checker: Callable[[str, str], bool] = exact_check
    split_key: Callable[[str], str] = str  # inputs with the same key always share a split

    def generate(self, rng: random.Random) -> tuple[str, str]:
        """One (input, output) pair drawn with ``rng``."""
        return self.generator(rng)

    def check(self, prediction: str, output: str) -> bool:
        """True when ``prediction`` is a correct answer whose reference is ``output``."""
        return self.checker(prediction, output)


@dataclass(frozen=True)
class Example:
    """A Record plus the family it was generated from (Record itself stays flat)."""

    record: Record
    family: str


# --- generators -------------------------------------------------------------------------------

def _words(rng: random.Random, lo: int, hi: int) -> list[str]:
    return rng.sample(WORDS, rng.randint(lo, hi))


def _numbers(rng: random.Random, lo: int, hi: int) -> list[int]:
    return rng.sample(range(100), rng.randint(lo, hi))


def _join(nums: Sequence[int]) -> str:
    return " ".join(map(str, nums))


def _reverse_words(rng):
    w = _words(rng, 3, 4)
    return " ".join(w), " ".join(reversed(w))


def _uppercase(rng):
    text = " ".join(_words(rng, 1, 3))
    return text, text.upper()


def _sort_numbers(rng):
    nums = _numbers(rng, 3, 6)
    return _join(nums), _join(sorted(nums))


def _count_words(rng):
    w = _words(rng, 1, 5)
    return " ".join(w), str(len(w))


def _add(rng):
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    return f"{a} {b}", str(a + b)


def _subtract(rng):
    a, b = sorted((rng.randint(0, 99), rng.randint(0, 99)), reverse=True)
    return f"{a} {b}", str(a - b)


def _max_of_list(rng):
    nums = _numbers(rng, 3, 6)
    return _join(nums), str(max(nums))


def _first_last_word(rng):
    w = _words(rng, 3, 5)
    return " ".join(w), f"{w[0]} {w[-1]}"


def _repeat_word(rng):
    word, n = rng.choice(WORDS), rng.randint(2, 4)
    return f"{word} {n}", " ".join([word] * n)


def _extract_digits(rng):
    n = rng.randint(5, 9)
    n_digits = rng.randint(2, min(5, n - 1))
    chars = [rng.choice("0123456789") for _ in range(n_digits)]
    chars += [rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n - n_digits)]
    rng.shuffle(chars)
    text = "".join(chars)
    return text, "".join(c for c in text if c.isdigit())


def _capital_of(rng):
    country = rng.choice(sorted(CAPITALS))
    return country, CAPITALS[country]


def _antonym(rng):
    word = rng.choice(sorted(ANTONYMS))
    return word, ANTONYMS[word]


def _comma_list(rng):
    w = _words(rng, 2, 4)
    return " ".join(w), ", ".join(w)


def _family(name, gen, train, heldout, **kw) -> Family:
    return Family(name, tuple(train), tuple(heldout), gen, **kw)


FAMILIES: dict[str, Family] = {f.name: f for f in [
    _family("reverse_words", _reverse_words, [
        "Reverse the order of the words.",
        "Write the words backwards, last word first.",
        "Put the words in the opposite order.",
        "List these words from the last one to the first one.",
        "Flip the order of the words in the input.",
        "Rewrite the list so that the last word comes first.",
    ], [
        "Read the words from right to left and write them down in that order.",
        "Give me the same words, but starting from the end.",
    ]),
    _family("uppercase", _uppercase, [
        "Convert the text to uppercase.",
        "Write the input in capital letters.",
        "Change every letter to upper case.",
        "Rewrite the words using only capital letters.",
        "Make all the letters uppercase.",
        "Turn the lowercase letters into capitals.",
    ], [
        "Shout the words: write them in all caps.",
        "Replace each small letter with the matching big letter.",
    ]),
    _family("sort_numbers", _sort_numbers, [
        "Sort the numbers from smallest to largest.",
        "Arrange the numbers in increasing order.",
        "Put these numbers in ascending order.",
        "Order the numbers from low to high, separated by spaces.",
        "Rewrite the list of numbers sorted in ascending order.",
        "Sort the list so that each number is bigger than the one before it.",
    ], [
        "Line up the numbers starting with the least one.",
        "Which order do these numbers have when ranked from lowest to highest?",
    ]),
    _family("count_words", _count_words, [
        "Count the words in the input.",
        "How many words are in the input?",
        "Tell me the number of words in the text.",
        "Give the word count of the input as a number.",
        "Count how many words there are and answer with a digit.",
        "What is the number of words given?",
    ], [
        "How long is this list, measured in words?",
        "Report how many separate words appear.",
    ]),
    _family("add", _add, [
        "Add the two numbers.",
        "What is the sum of the two numbers?",
        "Compute the total of the numbers.",
        "Add these numbers together and give the result.",
        "Calculate the first number plus the second number.",
        "Find the sum of both numbers.",
    ], [
        "If you combine these two amounts, how much do you get?",
        "Work out what the numbers make together.",
    ]),
    _family("subtract", _subtract, [
        "Subtract the second number from the first.",
        "What is the first number minus the second number?",
        "Compute the difference: first number minus second number.",
        "Take the second number away from the first and give the result.",
        "Calculate the first number take away the second.",
        "Find how much larger the first number is than the second.",
    ], [
        "Start from the first number and remove the second; what is left?",
        "By how much does the first number exceed the second?",
    ]),
    _family("max_of_list", _max_of_list, [
        "Find the largest number.",
        "Which number is the biggest?",
        "Return the maximum of the list.",
        "Give the highest number in the input.",
        "What is the greatest value among these numbers?",
        "Pick out the largest of the numbers.",
    ], [
        "Name the number that no other number in the list beats.",
        "Tell me the top value.",
    ]),
    _family("first_last_word", _first_last_word, [
        "Give the first and the last word, separated by a space.",
        "Write the first word, then the last word.",
        "Return only the first and final words.",
        "Keep the first word and the last word and drop the rest.",
        "What are the first and last words of the list?",
        "Output the opening word followed by the closing word.",
    ], [
        "Delete every word except the two at the ends.",
        "Which words start and end the list? Answer with both.",
    ]),
    _family("repeat_word", _repeat_word, [
        "Repeat the word as many times as the number says.",
        "Write the word the given number of times, separated by spaces.",
        "Copy the word out as often as the number tells you.",
        "Say the word again and again, the number of times shown.",
        "Output the word repeated the number of times given after it.",
        "Duplicate the word the stated number of times.",
    ], [
        "The number tells you how many copies of the word to write; write them.",
        "Echo the word, once per unit of the number.",
    ]),
    _family("extract_digits", _extract_digits, [
        "Extract the digits from the string.",
        "Keep only the digits, in their original order.",
        "Remove all the letters and leave the numbers.",
        "Write down every digit that appears, in order.",
        "Which digits are in the string? List them without spaces.",
        "Delete the letters from the string.",
    ], [
        "Pull the numerals out of this jumble of characters.",
        "Drop every alphabetic character.",
    ]),
    _family("capital_of", _capital_of, [
        "What is the capital of this country?",
        "Name the capital city.",
        "Give the capital of the country.",
        "Which city is the capital?",
        "Tell me the capital city of the given country.",
        "Write the name of this country's capital.",
    ], [
        "In which city does the government of this country sit?",
        "What city is the seat of government here?",
    ]),
    _family("antonym", _antonym, [
        "Give the opposite of the word.",
        "What is the antonym of this word?",
        "Write a word that means the opposite.",
        "Find the antonym of the word.",
        "Name the word with the opposite meaning.",
        "Which word means the reverse of this one?",
    ], [
        "Turn this word into its contrary.",
        "Answer with the word that is its opposite.",
    ], split_key=lambda w: min(w, ANTONYMS[w])),  # hot->cold and cold->hot share a split
    _family("comma_list", _comma_list, [
        "Separate the words with commas.",
        "Format the words as a comma-separated list.",
        "Put a comma and a space between the words.",
        "Rewrite the words as a list with commas.",
        "Join the words using commas.",
        "Insert commas between the words.",
    ], [
        "Punctuate this sequence of words the way a list is written.",
        "Use a comma wherever there is a gap between two words.",
    ]),
]}


# --- the rule of each family, applied to any input ---------------------------------------------

def _repeat(inp: str) -> str:
    word, n = inp.rsplit(" ", 1)
    return " ".join([word] * int(n))


def _two(inp: str) -> tuple[int, int]:
    a, b = inp.split()
    return int(a), int(b)


# ``SOLVERS[name](input)`` is the family's answer to any input of the right shape (the generators
# above compute the same answer for their own inputs; tests/test_verifiable.py checks it). It is
# what a model that ignores the instruction and applies one rule to everything would answer
# (chapter 06's instruction-blind baseline).
SOLVERS: dict[str, Callable[[str], str]] = {
    "reverse_words": lambda s: " ".join(reversed(s.split())),
    "uppercase": str.upper,
    "sort_numbers": lambda s: _join(sorted(map(int, s.split()))),
    "count_words": lambda s: str(len(s.split())),
    "add": lambda s: str(sum(_two(s))),
    "subtract": lambda s: str(_two(s)[0] - _two(s)[1]),
    "max_of_list": lambda s: str(max(map(int, s.split()))),
    "first_last_word": lambda s: f"{s.split()[0]} {s.split()[-1]}",
    "repeat_word": _repeat,
    "extract_digits": lambda s: "".join(c for c in s if c.isdigit()),
    "capital_of": lambda s: CAPITALS.get(s, ""),
    "antonym": lambda s: ANTONYMS.get(s, ""),
    "comma_list": lambda s: ", ".join(s.split()),
}


def solve(family: str, input: str) -> str:
    """The answer of ``family``'s rule to ``input``; "" where the rule does not apply to that input."""
    try:
        return SOLVERS[family](input)
    except (ValueError, IndexError):
        return ""


# --- datasets ---------------------------------------------------------------------------------

def split_of(family: str, input: str) -> str:
    """The split an input belongs to: a stable hash, 60% train / 20% validation / 20% test."""
    key = FAMILIES[family].split_key(input)
    bucket = zlib.crc32(f"{family}\x00{key}".encode()) % 5
    return "train" if bucket < 3 else ("validation" if bucket == 3 else "test")


def instances(family: Family, split: str, n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` instances of ``family`` whose inputs hash to ``split``; unique while the pool lasts."""
    rng = random.Random(f"{seed}/{split}/{family.name}")
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    misses = tries = 0
    while len(found) < n:
        inp, out = family.generate(rng)
        tries += 1
        if split_of(family.name, inp) != split:
            if tries > 1000 + 100 * n:
                raise RuntimeError(f"family {family.name!r} generates too few {split} inputs")
            continue
        if inp in seen and misses < 200:  # small pools (lookup tables) run out: then repeat
            misses += 1
            continue
        seen.add(inp)
        found.append((inp, out))
    return found


def make_examples(split: Split, n_per_family: int, seed: int = 0,
                  phrasings: Literal["train", "heldout"] = "train",
                  families: Sequence[str] | None = None) -> list[Example]:
    """Deterministic, shuffled examples: ``n_per_family`` per family, inputs disjoint across splits."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {SPLITS}")
    if phrasings not in ("train", "heldout"):
        raise ValueError(f"phrasings={phrasings!r} is not 'train' or 'heldout'")
    names = list(FAMILIES) if families is None else list(families)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise KeyError(f"unknown families {unknown}; known: {sorted(FAMILIES)}")
    rng = random.Random(f"{seed}/{split}/{phrasings}/phrasing")
    examples = []
    for name in names:
        fam = FAMILIES[name]
        pool = fam.train_phrasings if phrasings == "train" else fam.heldout_phrasings
        for inp, out in instances(fam, split, n_per_family, seed):
            examples.append(Example(Record(rng.choice(pool), inp, out), name))
    rng.shuffle(examples)
    return examples


def make_records(split: Split, n_per_family: int, seed: int = 0,
                 phrasings: Literal["train", "heldout"] = "train",
                 families: Sequence[str] | None = None) -> list[Record]:
    """The Records of ``make_examples`` (same order), for code that needs no family label."""
    return [e.record for e in make_examples(split, n_per_family, seed, phrasings, families)]


def _check(pred: str, ex) -> bool:
    if isinstance(ex, Example):
        return FAMILIES[ex.family].check(pred, ex.record.output)
    return exact_check(pred, ex.output)


def exact_match(predictions: Sequence[str], examples: Sequence) -> float:
    """Fraction of predictions that match their reference (Examples or Records)."""
    if len(predictions) != len(examples):
        raise ValueError(f"{len(predictions)} predictions for {len(examples)} examples")
    if not examples:
        raise ValueError("exact_match of an empty list")
    return sum(_check(p, e) for p, e in zip(predictions, examples)) / len(examples)


def score_by_family(predictions: Sequence[str], examples: Sequence[Example]) -> dict[str, float]:
    """Exact-match accuracy per family, in FAMILIES order (families absent from examples skipped)."""
    if len(predictions) != len(examples):
        raise ValueError(f"{len(predictions)} predictions for {len(examples)} examples")
    hits: dict[str, list[bool]] = {}
    for p, e in zip(predictions, examples):
        hits.setdefault(e.family, []).append(_check(p, e))
    return {n: sum(hits[n]) / len(hits[n]) for n in FAMILIES if n in hits}
