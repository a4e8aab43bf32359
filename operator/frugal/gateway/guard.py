"""The semantic cache's false-hit guard.

Embeddings place "how do I cancel my card" and "how do I not cancel my card", or "send $50" and
"send $500", very close together: they share almost every word. Serving one's answer to the
other is the worst thing a cache can do, so above the similarity threshold a hit must also agree
on the facts an embedding blurs:

- negation: when two questions are worded nearly alike (:data:`NEAR_WORDING` of their words
  in common, negation cues aside), the same number of negation cues (not, no, never, n't,
  cannot, without, ...). Questions worded differently often differ in negation without
  differing in meaning ("My card stopped working" / "Why is my card not working?"), and there
  the embedding's similarity has already judged the whole sentence;
- numbers: the same set of numbers (digits, decimals, number words, ordinals);
- named things: the same e-mail addresses, URLs and amounts; and a name one question writes
  (a capitalised word that does not just start a sentence with a common word, an acronym)
  must appear in the other, in any case: users do not capitalise consistently ("PIN" / "pin",
  "Apple Pay" / "apple pay"), but "Apple Pay" / "Google Pay" still differ. Words are compared
  without plural or possessive endings ("ATMs", "ATM's", "atm").

The guard is deliberately strict: a refused paraphrase only costs a model call, a false hit
costs a wrong answer. Its effect on hits and false hits is measured on banking77 by
bench/bench_semantic_cache.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NEGATIONS = {
    "not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "nowhere", "cannot",
    "without", "unable", "dont", "doesnt", "didnt", "cant", "wont", "isnt", "arent", "wasnt",
    "werent", "shouldnt", "wouldnt", "couldnt", "hasnt", "havent", "hadnt", "mustnt", "aint",
}  # fmt: skip
_NUMBER_WORDS = {
    "zero": 0, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000,
    "million": 10**6, "billion": 10**9, "first": 1, "second": 2, "third": 3, "fourth": 4,
    "fifth": 5, "half": 0.5, "twice": 2, "dozen": 12,
}  # fmt: skip
# "one" is left out on purpose: far more often a pronoun ("this one", "from one to another")
# than a count; "one card" and "two cards" still differ ({} against {2}).
# Words that start sentences with a capital without naming anything.
_COMMON = {
    "i", "a", "an", "the", "what", "how", "why", "when", "where", "who", "whom", "which",
    "whose", "is", "are", "am", "was", "were", "do", "does", "did", "can", "could", "will",
    "would", "should", "shall", "may", "might", "must", "have", "has", "had", "please", "hi",
    "hello", "hey", "thanks", "thank", "my", "your", "our", "their", "his", "her", "its", "it",
    "this", "that", "these", "those", "there", "here", "if", "so", "and", "but", "or", "yes",
    "ok", "okay", "tell", "give", "show", "explain", "help", "let", "lets", "let's", "we",
    "you", "they", "he", "she", "me", "in", "on", "at", "for", "to", "from", "with", "about",
    "after", "before", "since", "why's", "what's", "how's", "is't", "any", "some", "all",
    "also", "just", "now", "then", "today", "yesterday", "tomorrow", "again", "still", "not",
    "no", "never", "dont", "don't", "cant", "can't", "im", "i'm", "ive", "i've", "id", "i'd",
    "write", "make", "find", "get", "need", "want", "list", "describe", "summarize",
    "summarise", "translate", "compare", "send", "book", "cancel", "transfer", "open", "close",
    "check", "create", "delete", "remove", "add", "update", "change", "set", "reset", "order",
    "buy", "pay", "block", "freeze", "unfreeze", "activate", "verify", "withdraw", "deposit",
    "move", "print", "read", "generate", "draft", "suggest", "recommend", "calculate",
    "compute", "convert", "fix", "debug", "review", "rewrite", "continue", "stop", "start",
    "use", "try", "look", "keep", "call", "ask", "say", "go", "see", "know", "think", "top",
    "as", "by", "of", "one", "every", "each", "most", "many", "much", "more", "few", "other",
    "another", "such", "only", "same", "both", "either", "neither", "nor", "yet", "because",
    "although", "though", "while", "until", "unless", "whether", "instead", "actually",
    "really", "sorry", "well", "oh", "dear", "good", "great", "quick", "question",
}  # fmt: skip

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_URL = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
_AMOUNT = re.compile(
    r"[$€£¥₹]\s?\d[\d,]*(\.\d+)?|\d[\d,]*(\.\d+)?\s?(usd|eur|gbp|jpy|dollars?|euros?|pounds?|%)",
    re.IGNORECASE,
)
_CURRENCIES = (
    ("$", "usd"), ("usd", "usd"), ("dollar", "usd"), ("€", "eur"), ("eur", "eur"),
    ("£", "gbp"), ("gbp", "gbp"), ("pound", "gbp"), ("¥", "jpy"), ("jpy", "jpy"),
    ("₹", "inr"), ("%", "pct"),
)  # fmt: skip
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")
_SENTENCE_END = re.compile(r"[.!?:;\n]\s*$")


NEAR_WORDING = 0.5
"""Jaccard similarity of two questions' word sets (negation cues left out) from which a
difference in negation counts as the difference between them."""


@dataclass(frozen=True)
class Facts:
    """What must agree between two queries for one to answer the other."""

    negations: int
    numbers: frozenset[str]
    tagged: frozenset[str]
    """E-mail addresses, URLs and amounts: must be equal."""
    names: frozenset[str]
    """Capitalised names and acronyms: each must appear among the other's words."""
    words: frozenset[str]
    """Every word (normalised by :func:`_base`), negation cues left out."""

    @property
    def entities(self) -> frozenset[str]:
        return self.tagged | self.names


def _number(text: str) -> str:
    cleaned = text.replace(",", "")
    try:
        value = float(cleaned)
    except ValueError:
        return text
    return f"{value:g}"


def _amount(text: str) -> str:
    """``$1,000`` and ``1000 dollars`` are the same amount."""
    lowered = text.lower()
    currency = next((code for cue, code in _CURRENCIES if cue in lowered), "")
    number = _NUMBER.search(lowered)
    return f"amount:{currency}{_number(number.group(0)) if number else ''}"


def _negation(word: str) -> bool:
    return word.replace("'", "") in _NEGATIONS or word.endswith("n't")


def _base(word: str) -> str:
    """A word without case, possessive or plural ending: "ATMs", "ATM's" and "atm" agree."""
    word = word.lower().strip("'-")
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word


def facts(text: str) -> Facts:
    """Negation count, numbers, named things and words of a query."""
    norm = text.replace("’", "'")
    words = [w.lower() for w in _WORD.findall(norm)]
    negations = sum(1 for w in words if _negation(w))
    plain = frozenset(_base(w) for w in words if not _negation(w))
    tagged: set[str] = set()
    for pattern, tag in ((_EMAIL, "email"), (_URL, "url")):
        tagged.update(f"{tag}:{m.group(0).lower()}" for m in pattern.finditer(norm))
    tagged.update(_amount(m.group(0)) for m in _AMOUNT.finditer(norm))
    entities: set[str] = set()
    scrubbed = _URL.sub(" ", _EMAIL.sub(" ", norm))
    numbers = {_number(n) for n in _NUMBER.findall(scrubbed)}
    numbers |= {f"{_NUMBER_WORDS[w]:g}" for w in words if w in _NUMBER_WORDS}
    for match in _WORD.finditer(scrubbed):
        word = match.group(0).strip("'’-")
        if not word:
            continue
        before = scrubbed[: match.start()]
        sentence_start = not before.strip() or bool(_SENTENCE_END.search(before))
        acronym = len(word) >= 2 and word.isupper()
        base = re.split(r"['’]", word.lower())[0]  # "There's" is "there"
        capitalised = word[0].isupper() and (not sentence_start or base not in _COMMON)
        if acronym or (capitalised and word.lower() not in {"i", "i'm", "i've", "i'd"}):
            entities.add(_base(word))
    return Facts(negations, frozenset(numbers), frozenset(tagged), frozenset(entities), plain)


def _near_wording(a: frozenset[str], b: frozenset[str]) -> bool:
    union = len(a | b)
    return union == 0 or len(a & b) / union >= NEAR_WORDING


def agree(a: Facts, b: Facts) -> bool:
    """Whether two queries agree on every fact the guard checks."""
    if a.numbers != b.numbers or a.tagged != b.tagged:
        return False
    if not (a.names <= b.words and b.names <= a.words):
        return False
    return a.negations == b.negations or not _near_wording(a.words, b.words)


def compatible(a: str, b: str) -> bool:
    """Whether a cached answer to ``a`` may answer ``b`` (given they are similar enough)."""
    return agree(facts(a), facts(b))
