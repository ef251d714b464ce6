"""Caption templates: filling slots, placing plain phrases, article agreement.

A template is a string with at most one class slot (``{cls}``, alias ``{class}``) and
at most one word slot (``{word}``, aliases ``{adj}``, ``{noun}``, ``{value}``,
``{phrase}``: the names only document the intent), and at least one of the two:

* ``"a photo of a {adj} {cls}"``, ``"a photo of a {cls} on a {noun} background"``:
  a word and the class;
* ``"a sketch of a {cls}"``: a whole caption per class;
* ``"a photo of a {word}"``: no class slot, so the word names what the image shows,
  e.g. a sub-type of the class ("a photo of a sparrow" for the class bird).

:func:`fill` substitutes the slots, repairs the indefinite articles ("a old man" ->
"an old man", "a 8" -> "an 8") and squeezes whitespace; it returns None instead of a
caption with an empty slot.

A plain phrase (a line of a ``.txt`` vocabulary, a family without templates) has no
template of its own: :func:`phrase_template` places it where it reads, a modifier
before the class ("tiny" -> "a photo of a tiny 0") and a phrase that starts with a
preposition, an adverb of place such as "outdoors", or a verb ending in -ing/-ed
followed by more words after it ("in the snow", "lying down"). :func:`check_phrase`
refuses a phrase that starts with an article ("a red one"), which reads as nonsense
in either place.
"""

from __future__ import annotations

import re

__all__ = [
    "CLASS_SLOTS",
    "GENERIC_TEMPLATE",
    "MODIFIER_TEMPLATE",
    "REFERENCE_TEMPLATE",
    "WORD_SLOTS",
    "caption_key",
    "check_phrase",
    "check_template",
    "fill",
    "fix_articles",
    "indefinite_article",
    "normalize_space",
    "phrase_template",
    "restates_class",
]

CLASS_SLOTS = ("cls", "class")
WORD_SLOTS = ("word", "adj", "noun", "value", "phrase")
#: The caption every class's candidates are compared against ("classifier" method).
REFERENCE_TEMPLATE = "a photo of a {cls}"
#: Where a plain phrase that follows the class goes ("in the snow").
GENERIC_TEMPLATE = "a photo of a {cls} {phrase}"
#: Where a plain phrase that modifies the class goes ("tiny", "dark red").
MODIFIER_TEMPLATE = "a photo of a {adj} {cls}"

_ARTICLES = frozenset({"a", "an", "the"})
# First words of a phrase that follows the class: prepositions and conjunctions.
_FOLLOWING = frozenset(
    "about above across after against along alongside amid among amongst and around as at "
    "before behind below beneath beside besides between beyond by close down during except "
    "for from in inside into like near next of off on onto or out outside over past per "
    "through throughout to toward towards under underneath unlike until up upon versus via "
    "with within without".split()
)
# One-word phrases that follow the class ("a photo of a dog outdoors").
_FOLLOWING_WORDS = frozenset(
    "abroad afar afloat ablaze aloft alone apart asleep awake backwards downstairs "
    "elsewhere indoors nearby outdoors overhead sideways together underwater upside-down "
    "upstairs".split()
)

_SLOT = re.compile(r"\{([^{}]*)\}")
_ARTICLE = re.compile(r"\b(a|an)(\s+)([^\s]+)", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_PUNCT_SPACE = re.compile(r"\s+([,.;:!?])")

# Vowel-letter words read with a consonant sound ("a one-eyed", "a university").
_CONSONANT_SOUND = re.compile(
    r"^(one\b|one-|once|onesie|eu|ewe|uni[cfloqstv]|usa|use|usu|uti|ure|uro|uku|ubiq|uvu|ufo)",
    re.IGNORECASE,
)
# Consonant-letter words read with a vowel sound ("an hour", "an honest").
_VOWEL_SOUND = re.compile(r"^(hour|honest|honor|honour|heir|herb\b)", re.IGNORECASE)
# Letters whose names start with a vowel sound: "an X-ray", "an MRI", "an LED".
_VOWEL_LETTERS = set("aefhilmnorsx")
# Capitalised words that read as words, not letters: "RED", "NASA" (consonant-vowel start).
_WORDLIKE = re.compile(r"^[^AEIOU][AEIOU][^AEIOU]")


def normalize_space(text: str) -> str:
    """Collapse runs of whitespace to one space, strip the ends, drop space before punctuation."""
    return _PUNCT_SPACE.sub(r"\1", _SPACE.sub(" ", text)).strip()


def caption_key(text: str) -> str:
    """The de-duplication key of a caption: whitespace-normalised and lower-cased."""
    return normalize_space(text).casefold()


def _number_article(digits: str) -> str:
    """'an' for numbers read with a leading vowel sound: 8, 11, 18, 80-89, 800, 8000, 11000."""
    digits = digits.lstrip("0") or "0"
    lead = len(digits) % 3 or 3  # the leading group of thousands: "11" in "11,000"
    group = int(digits[:lead])
    if str(group).startswith("8") or group in (11, 18):
        return "an"
    return "a"


def indefinite_article(word: str) -> str:
    """Return ``"a"`` or ``"an"`` for the word that follows the article.

    Handles digits ("an 8", "an 11", "an 18", "a 7", "an 80"), vowel letters read
    as consonants ("a one-eyed", "a university", "a European"), silent h ("an hour")
    and initialisms read letter by letter ("an MRI", "an X-ray").
    """
    w = word.lstrip("\"'([")
    if not w:
        return "a"
    m = re.match(r"[0-9][0-9,]*", w)
    if m:
        return _number_article(m.group(0).replace(",", ""))
    head = re.split(r"[-\s/]", w, maxsplit=1)[0]
    if len(head) == 1 and head.isalpha():  # "X-ray", "U-turn"
        return "an" if head.lower() in _VOWEL_LETTERS else "a"
    if 2 <= len(head) <= 5 and head.isalpha() and head.isupper() and not _WORDLIKE.match(head):
        # an initialism read letter by letter: "an MRI", "an FBI", "a UFO", "a USB"
        return "an" if head[0].lower() in _VOWEL_LETTERS else "a"
    if _VOWEL_SOUND.match(w):
        return "an"
    if _CONSONANT_SOUND.match(w):
        return "a"
    return "an" if w[0].lower() in "aeiou" else "a"


def fix_articles(text: str) -> str:
    """Make every indefinite article agree with the word after it.

    The article's capitalisation is kept ("A" -> "An", "an" -> "a").
    """

    def repl(m: re.Match[str]) -> str:
        article, space, nxt = m.group(1), m.group(2), m.group(3)
        want = indefinite_article(nxt)
        if article[0].isupper():
            want = want.capitalize()
        return f"{want}{space}{nxt}"

    return _ARTICLE.sub(repl, text)


def check_template(template: str) -> str | None:
    """Return why ``template`` is unusable, or None if it is fine.

    A usable template has at most one class slot and at most one word slot, at least
    one of the two (``"a sketch of a {cls}"``, ``"a photo of a {word}"``), and no other
    ``{...}`` fields.
    """
    slots = _SLOT.findall(template)
    unknown = [s for s in slots if s not in CLASS_SLOTS + WORD_SLOTS]
    if unknown:
        allowed = ", ".join("{" + s + "}" for s in CLASS_SLOTS + WORD_SLOTS)
        return f"unknown slot {{{unknown[0]}}} (allowed: {allowed})"
    if template.count("{") != len(slots) or template.count("}") != len(slots):
        return "unbalanced braces"
    n_cls = sum(s in CLASS_SLOTS for s in slots)
    n_word = sum(s in WORD_SLOTS for s in slots)
    if n_cls > 1:
        return f"has {n_cls} class slots {{cls}}; use at most one"
    if n_word > 1:
        return f"has {n_word} word slots such as {{adj}} or {{noun}}; use at most one"
    if n_cls + n_word == 0:
        return "has no slot; give a class slot {cls}, a word slot {word}, or both"
    return None


def check_phrase(phrase: str) -> str | None:
    """Return why a plain phrase cannot be placed in a caption, or None if it can.

    A phrase that starts with an article ("a red one", "the snow") reads as nonsense
    before the class and after it ("a photo of a dog a red one"); write it without the
    article ("red", "in the snow") or as a template of its own.
    """
    words = normalize_space(phrase).split(" ")
    if words[0].casefold() in _ARTICLES:
        return (
            f"starts with the article {words[0]!r}, so it reads as nonsense beside the "
            f"class ({fill(GENERIC_TEMPLATE, cls='dog', word=phrase)!r}); drop the article "
            "or write a template with {cls} or {word}"
        )
    return None


def phrase_template(phrase: str) -> str:
    """The template a plain phrase is placed in (see the module docstring).

    :data:`GENERIC_TEMPLATE` (after the class) for a phrase that starts with a
    preposition ("in the snow", "with a red collar"), one of a few adverbs of place or
    state ("outdoors", "alone"), or a verb of five letters or more ending in -ing/-ed
    followed by more words ("lying down", "covered in snow"); else
    :data:`MODIFIER_TEMPLATE` (before it: "tiny", "dark red", "black and white").
    """
    words = normalize_space(phrase).casefold().split(" ")
    first = words[0]
    follows = (
        first in _FOLLOWING
        or (len(words) == 1 and first in _FOLLOWING_WORDS)
        or (len(words) > 1 and len(first) > 4 and first.endswith(("ing", "ed")))
    )
    return GENERIC_TEMPLATE if follows else MODIFIER_TEMPLATE


def fill(template: str, *, cls: str, word: str, articles: bool = True) -> str | None:
    """Fill a template's slots, fix its articles and normalise its whitespace.

    Parameters
    ----------
    template : str
        A template accepted by :func:`check_template`.
    cls : str
        The class name (or synonym) for the class slot (unused by a template without one).
    word : str
        The vocabulary phrase for the word slot.
    articles : bool, default=True
        Make "a"/"an" agree with the next word (:func:`fix_articles`).

    Returns
    -------
    str or None
        The caption, or None if ``cls`` or ``word`` is empty (a caption with an
        empty slot such as "a photo of a  on a background" is never emitted).
    """
    cls = normalize_space(cls)
    word = normalize_space(word)
    if not cls or not word:
        return None

    def repl(m: re.Match[str]) -> str:
        return cls if m.group(1) in CLASS_SLOTS else word

    text = normalize_space(_SLOT.sub(repl, template))
    return fix_articles(text) if articles else text


def _words(text: str) -> tuple[str, ...]:
    return tuple(re.findall(r"[\w'-]+", text.casefold()))


def _contains(haystack: tuple[str, ...], needle: tuple[str, ...]) -> bool:
    n = len(needle)
    return n > 0 and any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def restates_class(word: str, class_names: list[str] | tuple[str, ...]) -> bool:
    """True if the vocabulary phrase only restates the class.

    That is: the phrase equals one of the class's names, or is a whole-word part of
    one ("golden" for the class "golden retriever" would give "a golden golden
    retriever").
    """
    w = _words(word)
    return any(_contains(_words(name), w) for name in class_names)
