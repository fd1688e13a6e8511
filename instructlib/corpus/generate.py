"""Chapter 03: deterministic document generators: stories, facts, dialogues, arithmetic, lists and word play.

Every generator takes a ``random.Random`` and returns one document built only from the word lists
in ``words.py`` and from numbers it computes, so the text is the project's own.
"""
from __future__ import annotations

import random

from ..data.verifiable import FAMILIES, split_of
from . import words as W


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _an(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _plural(word: str) -> str:
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    return word[:-1] + "ies" if word.endswith("y") and word[-2] not in "aeiou" else word + "s"


def story(rng: random.Random) -> str:
    """A short children's story with a problem, a friend who helps and a moral."""
    (name, he, him, his), (friend, *_) = rng.sample(W.CHARACTERS, 2)
    animal, place, obj, color = (rng.choice(list(W.ANIMALS)), rng.choice(W.PLACES),
                                 rng.choice(W.OBJECTS), rng.choice(W.COLORS))
    act, acted = rng.choice(W.ACTIVITIES)
    trait, size, time = rng.choice(W.TRAITS), rng.choice(W.SIZES), rng.choice(W.TIMES)
    opening = rng.choice([
        f"Once upon a time, there was a {trait} {animal} named {name}.",
        f"{name} was a {trait} little {animal} who lived near the {place}.",
        f"In a quiet {place}, there lived a {trait} {animal} called {name}.",
    ])
    s = [opening,
         rng.choice([f"{_cap(he)} loved to {act} every day.",
                     f"Every {time}, {he} liked to {act} with {his} friends.",
                     f"More than anything, {name} wanted to {act}."]),
         f"One {time}, {name} found {_an(size)} {color} {obj} near {rng.choice(W.HIDING)}.",
         f"{name} wanted to take the {obj} home, but {rng.choice(W.PROBLEMS)}.",
         f"{_cap(he)} felt {rng.choice(W.WORRIES)}."]
    s.append(rng.choice([
            f'"Can you help me, {friend}?" asked {name}. "Of course!" said {friend}.',
            f'{friend} saw {him} and said, "Do not worry, I will help you."',
            f'"What happened?" asked {friend}. "My {obj} is in trouble," said {name}.',
            f"Just then, {his} friend {friend} came by and offered to help.",
        ]))
    s.append(f"Together, {rng.choice(W.SOLUTIONS)}, and soon the {obj} was safe.")
    s.append(rng.choice([
        f"Then {name} and {friend} {acted} until the sun went down.",
        f"After that, {name} and {friend} {acted} in the {place}.",
        f"{name} thanked {friend}, and they {acted} together.",
    ]))
    s.append(f"{name} felt {rng.choice(W.JOYS)}.")
    if rng.random() < 0.6:
        s.append(f"{name} learned that {rng.choice(W.MORALS)}.")
    return " ".join(s)


def facts(rng: random.Random) -> str:
    """A few true sentences about animals, numbers, days and general knowledge."""
    out = []
    for _ in range(rng.randint(3, 6)):
        kind = rng.randrange(5)
        if kind == 0:
            animal = rng.choice(list(W.ANIMALS))
            legs, sound, food, home = W.ANIMALS[animal]
            out.append(rng.choice([
                f"{_cap(_an(animal))} has {W.NUMBER_WORDS[legs]} legs.",
                f"{_cap(_an(animal))} {sound}.", f"{_cap(_an(animal))} eats {food}.",
                f"{_cap(_an(animal))} lives in {home}.",
                f"{_cap(_an(animal))} has {legs} legs, eats {food} and lives in {home}.",
            ]))
        elif kind == 1:
            n = rng.randint(1, 99)
            out.append(rng.choice([
                f"The number {n} comes after {n - 1} and before {n + 1}.",
                f"{n} is an {'even' if n % 2 == 0 else 'odd'} number.",
                f"Double {n} is {2 * n}.",
            ]))
        elif kind == 2:
            i = rng.randrange(7)
            out.append(f"The day after {W.DAYS[i]} is {W.DAYS[(i + 1) % 7]}.")
        elif kind == 3:
            i = rng.randrange(12)
            out.append(f"{W.MONTHS[i]} is month number {i + 1} of the year.")
        else:
            out.append(rng.choice(W.FACTS))
    return " ".join(out)


def dialogue(rng: random.Random) -> str:
    """A short conversation between two characters, one line per turn."""
    (a, *_), (b, *_) = rng.sample(W.CHARACTERS, 2)
    kind = rng.randrange(3)
    if kind == 0:
        food, price, count = rng.choice(W.FOODS), rng.randint(1, 9), rng.randint(2, 6)
        lines = [f"{a}: Hello! How much are the {food}?", f"{b}: They are {price} coins each.",
                 f"{a}: I would like {count}, please. How much is that?",
                 f"{b}: {count} times {price} is {count * price}, so that is {count * price} coins.",
                 f"{a}: Here you are. Thank you!", f"{b}: Thank you, have a nice day!"]
    elif kind == 1:
        w, place = rng.choice(W.WEATHER), rng.choice(W.PLACES)
        lines = [f"{a}: Good {rng.choice(['morning', 'afternoon', 'evening'])}, {b}!",
                 f"{b}: Hi, {a}! It is {w} today, is it not?",
                 f"{a}: Yes. Do you want to go to the {place}?",
                 f"{b}: " + rng.choice(["Yes, let us go together.", "Maybe later, I am busy now.",
                                        "Sure, I will bring my " + rng.choice(W.OBJECTS) + "."]),
                 f"{a}: Great, see you soon."]
    else:
        word = rng.choice(W.WORDS)
        lines = [f"{a}: Can you spell the word {word}?",
                 f"{b}: Yes. It is spelled {'-'.join(word)}.",
                 f"{a}: How many letters does it have?",
                 f"{b}: It has {len(word)} letters.", f"{a}: And backwards?",
                 f"{b}: Backwards it is {word[::-1]}."]
    return "\n".join(lines)


def arithmetic(rng: random.Random) -> str:
    """Sums, differences, products and a word problem, in words and in symbols."""
    out = []
    for _ in range(rng.randint(3, 6)):
        a, b = rng.randint(0, 50), rng.randint(0, 50)
        kind = rng.randrange(6)
        if kind == 0:
            out.append(f"{a} + {b} = {a + b}.")
        elif kind == 1:
            hi, lo = max(a, b), min(a, b)
            out.append(rng.choice([f"{hi} - {lo} = {hi - lo}.", f"{hi} minus {lo} equals {hi - lo}."]))
        elif kind == 2:
            a, b = a % 13, b % 13
            out.append(rng.choice([f"{a} * {b} = {a * b}.", f"{a} times {b} is {a * b}."]))
        elif kind == 3:
            out.append(f"What is {a} plus {b}? The answer is {a + b}.")
        elif kind == 4:
            out.append(f"Half of {2 * a} is {a}.")
        else:
            name, he, _, _ = rng.choice(W.CHARACTERS)
            fruit, x, y = rng.choice(W.FRUITS), rng.randint(1, 9), rng.randint(1, 9)
            out.append(f"{name} has {x} {_plural(fruit) if x > 1 else fruit}. {_cap(he)} gets {y} more. "
                       f"Now {he} has {x + y} {_plural(fruit)}.")
    return " ".join(out)


def lists(rng: random.Random) -> str:
    """A list of numbers or words, sorted, reversed, counted and summarised."""
    if rng.random() < 0.6:
        nums = [rng.randint(0, 99) for _ in range(rng.randint(3, 7))]
        show = lambda xs: ", ".join(map(str, xs))  # noqa: E731
        s = [f"Here is a list of numbers: {show(nums)}.",
             f"Sorted from smallest to largest: {show(sorted(nums))}.",
             f"Sorted from largest to smallest: {show(sorted(nums, reverse=True))}.",
             f"In reverse order: {show(nums[::-1])}.",
             f"The list has {len(nums)} numbers. The smallest is {min(nums)} and the largest is "
             f"{max(nums)}. Their sum is {sum(nums)}."]
    else:
        items = rng.sample(W.FRUITS + W.OBJECTS, rng.randint(3, 6))
        s = [f"Here is a list of words: {', '.join(items)}.",
             f"In alphabetical order: {', '.join(sorted(items))}.",
             f"The list has {len(items)} words. The first word is {items[0]} and the last is {items[-1]}.",
             f"The longest word is {max(items, key=len)}."]
    keep = sorted(rng.sample(range(1, len(s)), rng.randint(2, len(s) - 1)))
    return " ".join([s[0]] + [s[i] for i in keep])


def wordplay(rng: random.Random) -> str:
    """Spelling, reversing, uppercasing and counting letters and words."""
    out = []
    for _ in range(rng.randint(2, 4)):
        word = rng.choice(W.WORDS)
        letter = rng.choice(word)
        kind = rng.randrange(5)
        if kind == 0:
            out.append(f'The word "{word}" reversed is "{word[::-1]}".')
        elif kind == 1:
            out.append(f'The word "{word}" in capital letters is "{word.upper()}".')
        elif kind == 2:
            out.append(f'The word "{word}" has {len(word)} letters: {" ".join(word)}.')
        elif kind == 3:
            n = word.count(letter)
            out.append(f'The letter "{letter}" appears {n} time{"s" if n > 1 else ""} in "{word}".')
        else:
            sent = " ".join(rng.choice(W.WORDS) for _ in range(rng.randint(2, 5)))
            out.append(rng.choice([
                f'The sentence "{sent}" has {len(sent.split())} words.',
                f'In upper case, "{sent}" becomes "{sent.upper()}".',
                f'With the words in reverse order, "{sent}" becomes "{" ".join(sent.split()[::-1])}".',
            ]))
    return " ".join(out)


# Lookup families test knowledge: the corpus states every fact of their tables.
KNOWLEDGE_FAMILIES = ("capital_of", "antonym")


def _corpus_instance(name: str, rng: random.Random) -> tuple[str, str]:
    """An (input, output) pair of verifiable family ``name`` that the corpus may contain.

    Outside the lookup families the input belongs to the family's train split: the corpus never
    contains a validation or test input of chapter 05's task suite (``tests/test_corpus.py`` checks
    it), so exact match on those splits measures generalisation to new inputs.
    """
    while True:
        inp, out = FAMILIES[name].generate(rng)
        if name in KNOWLEDGE_FAMILIES or split_of(name, inp) == "train":
            return inp, out


# Worked examples of the verifiable operations, written as prose (never as an instruction/response
# pair): pretraining teaches the skills, instruction tuning (chapter 05) teaches the model to use
# them when asked. {i} is the input, {o} the output.
TASK_SENTENCES: dict[str, tuple[str, ...]] = {
    "reverse_words": ('With the words in reverse order, "{i}" becomes "{o}".',
                      'Read backwards, the words "{i}" give "{o}".'),
    "uppercase": ('In capital letters, "{i}" is written "{o}".', 'Shouted, "{i}" looks like "{o}".'),
    "sort_numbers": ("The numbers {i} in increasing order are {o}.", "Sorting {i} gives {o}."),
    "count_words": ('"{i}" has {o} {words}.', 'Count them: "{i}" is {o} {words}.'),
    "add": ("{i0} plus {i1} is {o}.", "The sum of {i0} and {i1} is {o}."),
    "subtract": ("{i0} minus {i1} is {o}.", "Take {i1} from {i0} and {o} is left."),
    "max_of_list": ("The largest of {i} is {o}.", "Of the numbers {i}, the biggest is {o}."),
    "first_last_word": ('The first and last words of "{i}" are "{o}".',
                        'In "{i}", the list starts and ends with "{o}".'),
    "repeat_word": ('The word {i0} written {i1} times is "{o}".', 'Say {i0} {i1} times: "{o}".'),
    "extract_digits": ('The digits in "{i}" are {o}.', 'Without its letters, "{i}" is {o}.'),
    "capital_of": ("The capital of {i} is {o}.", "{o} is the capital city of {i}.",
                   "The government of {i} sits in {o}."),
    "antonym": ('The opposite of "{i}" is "{o}".', '"{i}" and "{o}" are opposites.'),
    "comma_list": ('As a list with commas, "{i}" is "{o}".', 'With commas: {o}.'),
}


def tasks(rng: random.Random) -> str:
    """Worked examples of chapter 05's task operations (train-split inputs only), as sentences."""
    out = []
    for _ in range(rng.randint(3, 6)):
        name = rng.choice(sorted(TASK_SENTENCES))
        inp, o = _corpus_instance(name, rng)
        parts = inp.split()
        out.append(rng.choice(TASK_SENTENCES[name]).format(
            i=inp, o=o, i0=parts[0], i1=parts[-1], words="word" if o == "1" else "words"))
    return " ".join(out)


GENERATORS = {"story": story, "facts": facts, "dialogue": dialogue, "arithmetic": arithmetic,
              "lists": lists, "wordplay": wordplay, "tasks": tasks}
# How often each kind is drawn: half the documents are worked task examples (the skills chapter 05
# asks for), a quarter stories (fluent English), the rest facts, dialogues, arithmetic and lists.
WEIGHTS = {"story": 8, "facts": 2, "dialogue": 2, "arithmetic": 2, "lists": 1, "wordplay": 1, "tasks": 16}
