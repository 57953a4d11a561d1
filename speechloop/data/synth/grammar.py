"""Sentences from a small grammar: templates with slots over a plain English vocabulary.

A template is a string with ``{slot}`` fields. ``{name}`` and ``{name2}`` take invented
names (the hotwords); every other slot takes a word or phrase from its list below.
Templates with no name slot make plain sentences; templates with one or two make
sentences that carry hotwords.

Normalisation (:func:`normalise_text`, what every transcript in the corpus is):
lower-case; every character other than ``a``-``z`` and the apostrophe becomes a space;
apostrophes not inside a word are dropped; runs of spaces collapse to one; no leading
or trailing space. The character set is therefore :data:`CHARSET` (space, apostrophe,
``a``-``z``). Numbers are always written as words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

CHARSET = " '" + "abcdefghijklmnopqrstuvwxyz"

_NOT_ALLOWED = re.compile(r"[^a-z' ]+")
_EDGE_APOSTROPHES = re.compile(r"(?<![a-z])'|'(?![a-z])")
_SPACES = re.compile(r" +")
_SLOT = re.compile(r"\{([a-z0-9_]+)\}")

SLOTS: dict[str, tuple[str, ...]] = {
    "time": (
        "tomorrow morning",
        "this afternoon",
        "tonight",
        "next week",
        "on monday",
        "on tuesday",
        "on wednesday",
        "on thursday",
        "on friday",
        "at noon",
        "in ten minutes",
        "after lunch",
        "before dinner",
        "later today",
        "at seven",
        "at half past nine",
        "this evening",
        "on the weekend",
        "right now",
        "next month",
    ),
    "place": (
        "kitchen",
        "office",
        "station",
        "library",
        "garden",
        "market",
        "airport",
        "hotel",
        "museum",
        "bakery",
        "hospital",
        "school",
        "harbour",
        "bridge",
        "park",
        "corner shop",
        "main square",
        "river bank",
        "train platform",
        "cinema",
    ),
    "thing": (
        "report",
        "letter",
        "ticket",
        "package",
        "umbrella",
        "laptop",
        "camera",
        "key",
        "blue folder",
        "old map",
        "guitar",
        "bicycle",
        "coffee cup",
        "phone",
        "notebook",
        "red jacket",
        "spare battery",
        "picture",
        "bottle of water",
        "recipe",
    ),
    "action": (
        "water the plants",
        "buy some bread",
        "book a table",
        "check the mail",
        "pay the bill",
        "clean the car",
        "feed the cat",
        "call the doctor",
        "pick up the kids",
        "read the news",
        "send the invoice",
        "lock the door",
        "charge the phone",
        "fix the printer",
        "order more paper",
        "walk the dog",
    ),
    "adj": (
        "quiet",
        "bright",
        "heavy",
        "small",
        "warm",
        "cold",
        "busy",
        "empty",
        "green",
        "yellow",
        "strange",
        "simple",
        "early",
        "lucky",
        "careful",
        "happy",
    ),
    "number": (
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "twelve",
        "fifteen",
        "twenty",
        "thirty",
        "forty",
        "fifty",
        "a hundred",
    ),
    "weather": (
        "sunny",
        "rainy",
        "windy",
        "cloudy",
        "foggy",
        "cold",
        "warm",
        "stormy",
    ),
    "music": (
        "some jazz",
        "the radio",
        "quiet music",
        "my playlist",
        "the news",
        "something happy",
        "a podcast",
        "the morning show",
    ),
}

PLAIN_TEMPLATES: tuple[str, ...] = (
    "remind me to {action} {time}",
    "please {action} {time}",
    "the {adj} {thing} is in the {place}",
    "i left my {thing} at the {place}",
    "can you find the {thing} near the {place}",
    "it will be {weather} {time}",
    "is it going to be {weather} {time}",
    "play {music} in the {place}",
    "set a timer for {number} minutes",
    "we need {number} more chairs in the {place}",
    "don't forget to {action}",
    "let's meet at the {place} {time}",
    "the {place} opens {time}",
    "how far is the {place} from here",
    "turn off the lights in the {place}",
    "i'm going to the {place} {time}",
    "what time does the {place} close",
    "the train leaves in {number} minutes",
    "bring the {thing} to the {place} please",
    "that was a {adj} day at the {place}",
    "there's a {adj} {thing} on the table",
    "it's {weather} outside so take the {thing}",
    "add {number} apples to the shopping list",
    "we should {action} before we leave",
)

NAME_TEMPLATES: tuple[str, ...] = (
    "please call {name} {time}",
    "send a message to {name}",
    "tell {name} to {action}",
    "{name} left the {thing} at the {place}",
    "remind {name} to {action} {time}",
    "is {name} coming to the {place} {time}",
    "ask {name} about the {adj} {thing}",
    "{name} will meet us at the {place}",
    "what did {name} say about the {thing}",
    "share the {thing} with {name}",
    "book a table for {name} {time}",
    "i saw {name} near the {place}",
    "{name} needs {number} more tickets",
    "where is {name} right now",
    "play the song that {name} likes",
    "schedule a call with {name} {time}",
    "{name} said it's {weather} at the {place}",
    "let {name} know that the {thing} is ready",
    "did {name} {action}",
    "open the notes from {name}",
    "hey {name} what's the plan",
    "the {thing} belongs to {name}",
)

TWO_NAME_TEMPLATES: tuple[str, ...] = (
    "{name} and {name2} will be at the {place} {time}",
    "tell {name} that {name2} has the {thing}",
    "introduce {name} to {name2} {time}",
    "{name} asked {name2} to {action}",
    "set up a meeting with {name} and {name2}",
    "did {name} call {name2} {time}",
)


def normalise_text(text: str) -> str:
    """The corpus's transcript form (see the module docstring): ``[a-z' ]``, single spaces."""
    lowered = _NOT_ALLOWED.sub(" ", text.lower().replace("\u2019", "'"))
    no_edges = _EDGE_APOSTROPHES.sub(" ", lowered)
    return _SPACES.sub(" ", no_edges).strip()


def vocabulary_words() -> tuple[str, ...]:
    """Every plain word the grammar can produce (normalised, sorted, unique)."""
    words: set[str] = set()
    for template in PLAIN_TEMPLATES + NAME_TEMPLATES + TWO_NAME_TEMPLATES:
        words.update(normalise_text(_SLOT.sub(" ", template)).split())
    for values in SLOTS.values():
        for value in values:
            words.update(normalise_text(value).split())
    return tuple(sorted(words))


@dataclass(frozen=True)
class Sentence:
    """A sentence to speak (``display``), its transcript and the names it carries."""

    display: str
    text: str
    hotwords: tuple[str, ...]


def _fill(template: str, rng: np.random.Generator, names: dict[str, str]) -> str:
    """Replace each slot of ``template`` with a word from its list or a given name."""

    def pick(match: re.Match[str]) -> str:
        slot = match.group(1)
        if slot in names:
            return names[slot]
        values = SLOTS[slot]
        return values[int(rng.integers(len(values)))]

    return _SLOT.sub(pick, template)


def make_sentence(rng: np.random.Generator, names: tuple[str, ...]) -> Sentence:
    """A sentence carrying exactly ``names`` (zero, one or two display-form names).

    The transcript is normalised; ``hotwords`` holds the names in normalised form, in
    the order they occur.
    """
    if len(names) > 2:
        raise ValueError(f"a sentence carries at most two names, got {len(names)}")
    templates = (PLAIN_TEMPLATES, NAME_TEMPLATES, TWO_NAME_TEMPLATES)[len(names)]
    template = templates[int(rng.integers(len(templates)))]
    slots = dict(zip(("name", "name2"), names, strict=False))
    display = _fill(template, rng, slots)
    display = display[0].upper() + display[1:] + ("?" if _is_question(template) else ".")
    return Sentence(
        display=display,
        text=normalise_text(display),
        hotwords=tuple(normalise_text(n) for n in names),
    )


def _is_question(template: str) -> bool:
    """Whether a template reads as a question (only affects the spoken intonation)."""
    first = template.split()[0]
    return first in {"is", "what", "where", "how", "can", "did", "hey"}
