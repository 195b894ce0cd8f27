"""Cheap offline language and noise check: is there English text worth classifying?

A heuristic, not a model: strip URLs, mentions, cashtags and numbers, then look at the script of the letters and at
function words. English tweets about stocks nearly always contain an English function word or are short
enough that we give them the benefit of the doubt; text in another Latin-script language has its own.
"""

from __future__ import annotations

import re

_NOISE = re.compile(r"https?://\S+|www\.\S+|[@$#][\w.]+|&amp;|\d+(?:[.,:/%]\d+)*%?|RT\b")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)

ENGLISH = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both but
by can could did do does doing down during each few for from further had has have having he her here hers him his
how i if in into is it its itself just me more most my no nor not now of off on once only or other our out over
own same she should so some such than that the their them then there these they this those through to too under
until up very was we were what when where which while who whom why will with would you your buy sell stock stocks
shares price up down new high low today week market earnings news long short call calls puts report q1 q2 q3 q4
says via
""".split())  # noqa: SIM905 - a word list reads better as text
OTHER = frozenset("""
el la los las del que por para con una unos est les des une dans pour sur avec pas qui sont der die das und nicht
ist mit auf sich den dem ein eine het een van niet voor ook zijn yang dan di ini itu untuk dengan dari ke akan
tidak pada juga ada adalah nya de em um uma não com como mais por para mas ser ao na da do dos das il che di non
per sono della alla och att inte för är på ng sa mga ang ay mo ko na si kay hindi
""".split())  # noqa: SIM905 - a word list reads better as text


def detect_language(text: str) -> tuple[str, str | None]:
    """Return (language code, flag): ("en", None), ("xx", "non_english") or ("", "empty").

    "empty" means nothing but URLs, mentions, cashtags, numbers or punctuation is left.
    """
    stripped = _NOISE.sub(" ", text or "")
    words = [w.lower() for w in _WORD.findall(stripped)]
    if not words:
        return "", "empty"
    letters = [c for w in words for c in w]
    non_latin = sum(1 for c in letters if ord(c) > 0x24F)  # beyond Latin Extended-B: CJK, Cyrillic, Arabic...
    if non_latin / len(letters) > 0.3:
        return "xx", "non_english"
    english = sum(1 for w in words if w in ENGLISH)
    other = sum(1 for w in words if w in OTHER and w not in ENGLISH)
    if other >= 2 and other > english:
        return "xx", "non_english"
    accented = sum(1 for c in letters if 0xC0 <= ord(c) <= 0x24F)
    if english == 0 and len(words) >= 4 and (other >= 1 or accented >= 2):
        return "xx", "non_english"
    return "en", None
