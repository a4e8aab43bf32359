"""The semantic cache's false-hit guard.

Embeddings place "how do I cancel my card" and "how do I not cancel my card", or "send $50" and
"send $500", very close together: they share almost every word. Serving one's answer to the
other is the worst thing a cache can do, so above the similarity threshold a hit must also agree
on the facts an embedding blurs:

- negation: the same number of negation cues (not, no, never, n't, cannot, without, ...);
- numbers: the same set of numbers (digits, decimals, number words, ordinals);
- named things: the same capitalised names, acronyms, e-mail addresses, URLs and amounts.

The guard is deliberately strict: a refused paraphrase only costs a model call, a false hit
costs a wrong answer.
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


@dataclass(frozen=True)
class Facts:
    """What must be equal between two queries for one to answer the other."""

    negations: int
    numbers: frozenset[str]
    entities: frozenset[str]


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


def facts(text: str) -> Facts:
    """Negation count, numbers and named things of a query."""
    norm = text.replace("’", "'")
    words = [w.lower() for w in _WORD.findall(norm)]
    negations = sum(1 for w in words if w.replace("'", "") in _NEGATIONS or w.endswith("n't"))
    entities: set[str] = set()
    for pattern, tag in ((_EMAIL, "email"), (_URL, "url")):
        entities.update(f"{tag}:{m.group(0).lower()}" for m in pattern.finditer(norm))
    entities.update(_amount(m.group(0)) for m in _AMOUNT.finditer(norm))
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
            entities.add(word.lower())
    return Facts(negations, frozenset(numbers), frozenset(entities))


def compatible(a: str, b: str) -> bool:
    """Whether a cached answer to ``a`` may answer ``b`` (given they are similar enough)."""
    return facts(a) == facts(b)
