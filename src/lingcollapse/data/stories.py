"""The embedded corpus: seeded, TinyStories-like children's stories, no download needed.

A story is an opening, an introduction, two to four episodes and an ending with a moral,
each sentence a template filled with words drawn with Zipf weights (:mod:`.lexicon`).
That reproduces in miniature what the paper's phenomena rest on:

- heavy-tailed token frequencies (Fig. 4): few frequent classes, many rare ones;
- recurring openings ("Once upon a time, …") with varying continuations, so one context
  is followed by many different tokens (ambiguous contexts, §1.2);
- first names (all of Table 5) in name-specific slots, and the homonyms of Table 4
  each used in two or more senses (Appendix Q).

Speed: all randomness comes from NumPy in blocks (:class:`Draw`), so the Python work
per word is one list index; a few million tokens take a few seconds.
"""

from __future__ import annotations

import numpy as np

from lingcollapse.data import lexicon as L

# Zipf–Mandelbrot weights by list position: p_i ∝ 1 / (i + 2.7)^1.1, as in word counts.
_ZIPF_SHIFT, _ZIPF_POWER = 2.7, 1.1
VERSION = "lingcollapse.stories/1"  # bump when the same seed would give other stories
_BLOCK = 4096  # draws per refill: large enough to amortise NumPy's call overhead

_PLURAL_IRREGULAR = {
    "mouse": "mice",
    "sheep": "sheep",
    "fish": "fish",
    "child": "children",
    "deer": "deer",
    "goose": "geese",
    "knife": "knives",
    "leaf": "leaves",
    "wolf": "wolves",
    "shelf": "shelves",
    "puppy": "puppies",
    "bunny": "bunnies",
    "butterfly": "butterflies",
    "pony": "ponies",
    "berry": "berries",
    "cherry": "cherries",
    "candy": "candies",
    "ladybug": "ladybugs",
}


def plural(noun: str) -> str:
    """The plural of a lexicon noun (English rules plus the irregular ones used here)."""
    if noun in _PLURAL_IRREGULAR:
        return _PLURAL_IRREGULAR[noun]
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


class Draw:
    """Random choices served from NumPy blocks: Zipf picks from lists, coins, integers.

    Deterministic for a seed: the order of calls is fixed by the generator's code, and
    every block is drawn from the one ``numpy.random.Generator``.
    """

    def __init__(self, seed: int | np.random.SeedSequence):
        self.rng = np.random.default_rng(seed)
        self._lists: dict[int, list] = {}  # id(seq) -> [drawn items, position]
        self._uniform = self.rng.random(_BLOCK).tolist()
        self._u = 0

    def pick(self, seq):
        """One item of ``seq``, earlier items more likely (Zipf weights by position)."""
        slot = self._lists.get(id(seq))
        if slot is None or slot[1] == _BLOCK:
            slot = self._lists[id(seq)] = [self._block(seq), 0]
        item = slot[0][slot[1]]
        slot[1] += 1
        return item

    def _block(self, seq) -> list:
        weights = 1.0 / (np.arange(len(seq)) + _ZIPF_SHIFT) ** _ZIPF_POWER
        index = self.rng.choice(len(seq), size=_BLOCK, p=weights / weights.sum())  # (B,)
        items = np.empty(len(seq), dtype=object)
        items[:] = list(seq)
        return items[index].tolist()

    def uniform(self) -> float:
        if self._u == _BLOCK:
            self._uniform, self._u = self.rng.random(_BLOCK).tolist(), 0
        self._u += 1
        return self._uniform[self._u - 1]

    def coin(self, p: float = 0.5) -> bool:
        return self.uniform() < p

    def below(self, n: int) -> int:
        """A uniform integer in [0, n)."""
        return int(self.uniform() * n)

    def one_of(self, seq):
        """A uniformly chosen item (for templates, whose variety should be even)."""
        return seq[self.below(len(seq))]


class Cast:
    """The people (and pet) of one story, with the pronouns the templates need."""

    def __init__(self, d: Draw):
        self.name, self.p = d.pick(L.NAMES)
        friend = d.pick(L.NAMES)
        while friend[0] == self.name:
            friend = d.one_of(L.NAMES)
        self.friend, self.fp = friend
        self.P = self.p.capitalize()
        self.q = "his" if self.p == "he" else "her"
        self.pet_kind = d.pick(L.ANIMALS)
        self.pet = d.pick(L.PET_NAMES)
        self.elder = d.pick(L.FAMILY)
        self.kid = d.pick(L.KIDS[self.p])


def _opening(d: Draw, c: Cast) -> str:
    adj, kid, place = d.pick(L.ADJECTIVES), c.kid, d.pick(L.PLACES)
    choice = d.below(10)
    if choice < 3:
        return f"Once upon a time, there was {article(adj)} {adj} {kid} named {c.name}."
    if choice < 5:
        return f"Once upon a time, in {article(adj)} {adj} {place}, there lived {c.name}."
    if choice == 5:
        return f"Once upon a time, {c.name} and {c.q} {c.pet_kind} {c.pet} lived near a {place}."
    if choice == 6:
        return f"One day, {article(adj)} {adj} {kid} named {c.name} went to the {place}."
    if choice == 7:
        return f"There once was {article(adj)} {adj} {kid} called {c.name}."
    if choice == 8:
        return f"Long ago, in a {place} far away, lived {article(kid)} {kid} named {c.name}."
    return (
        f"Once upon a time, there was {article(adj)} {adj} {c.pet_kind} named {c.pet}. "
        f"{c.pet} lived with {article(kid)} {kid} called {c.name}."
    )


def _intro(d: Draw, c: Cast) -> list[str]:
    verb = d.pick(L.VERBS_INTRANSITIVE)[0]
    toy, color, time = d.pick(L.TOYS), d.pick(L.COLORS), d.pick(L.TIMES)
    out = [
        d.one_of(
            (
                f"{c.P} loved to {verb} with {c.q} {toy}.",
                f"{c.P} had {article(color)} {color} {toy} that {c.p} loved very much.",
                f"{c.name} liked to {verb} every {time}.",
                f"Every {time}, {c.name} went outside to {verb}.",
                f"{c.P} was very {d.pick(L.ADJECTIVES)} and liked to {verb}.",
            )
        )
    ]
    if d.coin(0.4):
        out.append(f"{c.P} had a {d.pick(L.ADJECTIVES)} {c.pet_kind} named {c.pet}.")
    return out


def _find(d: Draw, c: Cast) -> list[str]:
    adj, thing, place = d.pick(L.ADJECTIVES), d.pick(L.TOYS), d.pick(L.PLACES)
    prep, nat, feel = d.pick(L.PREPOSITIONS), d.pick(L.NATURE), d.pick(L.FEELINGS)
    how, verb = d.pick(L.ADJECTIVES), d.pick(L.VERBS_TRANSITIVE)[0]
    return [
        f"One day, {c.name} found {article(adj)} {adj} {thing} {prep} a {nat} in the {place}.",
        f"{c.P} was so {feel}!",
        f'"Look, {c.friend}! I found {article(thing)} {thing}!" {c.name} said.',
        f'{c.friend} said, "Wow, it is so {how}. Can I {verb} it?"',
    ]


def _lost(d: Draw, c: Cast) -> list[str]:
    thing, place, feel = d.pick(L.TOYS), d.pick(L.PLACES), d.pick(L.FEELINGS)
    look, prep, nat = d.pick(L.PLACES), d.pick(L.PREPOSITIONS), d.pick(L.NATURE)
    found = d.one_of(
        (
            f"At last, {c.pet} the {c.pet_kind} found the {thing} and brought it back.",
            f"{c.P} asked {c.q} {c.elder} for help, and together they found it.",
            f"{c.friend} helped {c.name} look, and soon they saw the {thing}.",
        )
    )
    return [
        f"But then {c.name} lost {c.q} {thing} at the {place}.",
        f"{c.P} felt {feel} and started to cry.",
        f"{c.P} looked {prep} the {nat} and in the {look}.",
        found,
    ]


def _meet(d: Draw, c: Cast) -> list[str]:
    adj, animal, place = d.pick(L.ADJECTIVES), d.pick(L.ANIMALS), d.pick(L.PLACES)
    verb, feel, why, time = (
        d.pick(L.VERBS_INTRANSITIVE),
        d.pick(L.FEELINGS),
        d.pick(L.ADJECTIVES),
        d.pick(L.TIMES),
    )
    answer = d.one_of(
        (
            f'The {animal} said, "Yes, I would love to!"',
            f'The {animal} was {feel} and said, "No, I am too {why}."',
            f"The {animal} nodded, and they {verb[1]} together all {time}.",
        )
    )
    return [
        f"At the {place}, {c.name} met {article(adj)} {adj} {animal}.",
        f'"Hello, {animal}! Do you want to {verb[0]} with me?" asked {c.name}.',
        answer,
    ]


def _help(d: Draw, c: Cast) -> list[str]:
    animal, nat, feel = d.pick(L.ANIMALS), d.pick(L.NATURE), d.pick(L.FEELINGS)
    verb, how, adj = d.pick(L.VERBS_TRANSITIVE), d.pick(L.ADVERBS), d.pick(L.ADJECTIVES)
    return [
        f"Then {c.name} saw {article(animal)} {animal} stuck in a {nat}.",
        f"The {animal} looked {feel} and could not get out.",
        f"{c.name} wanted to help, so {c.p} {verb[1]} the {nat} {how}.",
        f'"Thank you!" said the {animal}. "You are very {adj}."',
    ]


def _share(d: Draw, c: Cast) -> list[str]:
    food, n, box, adj = d.pick(L.FOOD), d.pick(L.NUMBERS), d.pick(L.TOYS), d.pick(L.ADJECTIVES)
    answer = d.one_of(
        (
            f'{c.name} did not want to share at first, but then {c.p} said, "Yes, here you go."',
            f'{c.name} smiled and said, "Of course! Let us share."',
            f"{c.name} gave {c.friend} the biggest one.",
        )
    )
    return [
        f"{c.P} had {n} {plural(food)} in {c.q} {box}.",
        f'{c.friend} asked, "Can I have one, please?"',
        answer,
        f"The {plural(food)} were very {adj}.",
    ]


def _weather(d: Draw, c: Cast) -> list[str]:
    sky, color = d.one_of(("rain", "snow", "wind", "sun", "storm", "fog")), d.pick(L.COLORS)
    place, feel, how = d.pick(L.PLACES), d.pick(L.FEELINGS), d.pick(L.ADVERBS)
    return [
        f"Suddenly, the {sky} came and the sky was {color}.",
        f"{c.name} and {c.friend} ran to the {place} to hide.",
        f'"I am {feel}," said {c.friend}. "Me too," said {c.name}.',
        f"They waited {how} until the {sky} was gone.",
    ]


def _build(d: Draw, c: Cast) -> list[str]:
    thing, nat, n, adj = d.pick(L.TOYS), d.pick(L.NATURE), d.pick(L.NUMBERS), d.pick(L.ADJECTIVES)
    how, time = d.pick(L.ADVERBS), d.pick(L.TIMES)
    return [
        f"{c.name} wanted to make {article(thing)} {thing} out of {n} {plural(nat)}.",
        f"{c.P} worked {how} all {time}.",
        f'When it was done, {c.q} {c.elder} said, "What {article(adj)} {adj} {thing}!"',
    ]


def _trip(d: Draw, c: Cast) -> list[str]:
    place, ride, animals = d.pick(L.PLACES), d.pick(L.TOYS), plural(d.pick(L.ANIMALS))
    adj, verb, food = d.pick(L.ADJECTIVES), d.pick(L.VERBS_INTRANSITIVE), d.pick(L.FOOD)
    return [
        f"One {d.pick(L.TIMES)}, {c.q} {c.elder} took {c.name} to the {place}.",
        f"They saw many {adj} {animals} there.",
        f'"Can we {verb[0]} here?" asked {c.name}. "Yes, but stay close," said {c.q} {c.elder}.',
        f"{c.name} {verb[1]} and ate {article(food)} {food} by the {ride}.",
    ]


def _fear(d: Draw, c: Cast) -> list[str]:
    adj, thing, place = d.pick(L.ADJECTIVES), d.pick(L.ANIMALS), d.pick(L.PLACES)
    feel, how = d.pick(L.FEELINGS), d.pick(L.ADVERBS)
    return [
        f"That night, {c.name} heard a {adj} noise in the {place}.",
        f"{c.P} was {feel}, but {c.p} walked {how} to see what it was.",
        f"It was only a little {thing} looking for a home.",
        f'"You can stay with me," {c.name} said {how}.',
    ]


def _game(d: Draw, c: Cast) -> list[str]:
    toy, verb, adj, feel = (
        d.pick(L.TOYS),
        d.pick(L.VERBS_TRANSITIVE),
        d.pick(L.ADJECTIVES),
        d.pick(L.FEELINGS),
    )
    return [
        f"{c.name} and {c.friend} played a game with {article(toy)} {toy}.",
        f"They took turns to {verb[0]} the {toy}.",
        f'When {c.friend} won, {c.name} felt {feel}, but {c.p} said, "Good job! That was {adj}!"',
    ]


def _gift(d: Draw, c: Cast) -> list[str]:
    gift, color, time, adj = d.pick(L.TOYS), d.pick(L.COLORS), d.pick(L.TIMES), d.pick(L.ADJECTIVES)
    return [
        f"On {c.q} {time}, {c.name} got {article(color)} {color} box from {c.q} {c.elder}.",
        f"Inside was {article(adj)} {adj} {gift}!",
        f'"Thank you so much!" said {c.name}, and gave {c.q} {c.elder} a big hug.',
    ]


def _homonym(d: Draw, c: Cast) -> list[str]:
    word = d.one_of(_HOMONYM_WORDS)
    sentence = d.one_of(L.HOMONYMS[word]).format(n=c.name, p=c.p, q=c.q)
    return [sentence]


_HOMONYM_WORDS = tuple(L.HOMONYMS)
# Homonym scenes appear twice: each story has about one, so every sense is well sampled.
_EPISODES = (
    _find,
    _lost,
    _meet,
    _help,
    _share,
    _weather,
    _build,
    _trip,
    _fear,
    _game,
    _gift,
    _homonym,
    _homonym,
)


def _ending(d: Draw, c: Cast) -> list[str]:
    feel = d.pick(L.FEELINGS)
    end = d.one_of(
        (
            f"In the end, {c.name} and {c.friend} were very {feel}.",
            f"From that day on, {c.name} and {c.friend} were best friends.",
            f"{c.name} went home and told {c.q} {c.elder} all about it.",
            f"That night, {c.name} went to sleep with a big smile.",
        )
    )
    moral = d.pick(L.MORALS)
    return [end, d.one_of((f"{c.name} learned that {moral}.", f"{c.P} knew that {moral}."))]


def story(d: Draw) -> str:
    """One story: opening, introduction, 2–4 episodes, ending and moral."""
    c = Cast(d)
    sentences = [_opening(d, c), *_intro(d, c)]
    for _ in range(2 + d.below(3)):
        sentences += d.one_of(_EPISODES)(d, c)
    sentences += _ending(d, c)
    return " ".join(sentences)


def approx_tokens(text: str) -> int:
    """Words plus punctuation marks: about the token count of a BPE of a few thousand
    tokens on this corpus (each lexicon word is one token, each mark one more)."""
    return text.count(" ") + 1 + sum(text.count(m) for m in '.,!?"')


def generate(tokens: int, seed: int | np.random.SeedSequence) -> list[str]:
    """Stories until about ``tokens`` tokens (see :func:`approx_tokens`), for ``seed``."""
    d = Draw(seed)
    out, total = [], 0
    while total < tokens:
        text = story(d)
        out.append(text)
        total += approx_tokens(text)
    return out
