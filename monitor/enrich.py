"""Tickers from text: cashtags ($AAPL), watchlist aliases (company names) and long watched tickers written bare.

Short tickers (three letters or fewer, e.g. T, D, FB, BAC) are found only by cashtag or alias, never as bare
letters: "T" and "D" are ordinary letters, "DIS" and "BAC" ordinary words in other languages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from monitor.tables import WatchlistEntry
from monitor.vocabulary import normalise_ticker

CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z][A-Za-z0-9]{0,5}(?:\.[A-Za-z]{1,3})?)(?![\w])")
TICKER = re.compile(r"^[A-Z][A-Z0-9.\-]{0,15}$")
BARE_MIN_LEN = 4  # watched tickers at least this long also match as a bare upper-case word (AAPL, MSFT)

DEFAULT_WATCHLIST: dict[str, tuple[str, list[str]]] = {
    "AAPL": ("Apple Inc.", ["Apple", "iPhone"]),
    "GOOG": ("Alphabet Inc.", ["Google", "Alphabet"]),
    "AMZN": ("Amazon.com Inc.", ["Amazon"]),
    "FB": ("Facebook Inc.", ["Facebook"]),
    "MSFT": ("Microsoft Corp.", ["Microsoft"]),
    "BABA": ("Alibaba Group", ["Alibaba"]),
    "BAC": ("Bank of America", ["Bank of America", "BofA"]),
    "DIS": ("Walt Disney Co.", ["Disney", "Walt Disney"]),
    "INTC": ("Intel Corp.", ["Intel"]),
    "CELG": ("Celgene Corp.", ["Celgene"]),
    "T": ("AT&T Inc.", ["AT&T"]),
    "D": ("Dominion Resources", ["Dominion Resources", "Dominion Energy"]),
}


@dataclass
class Enricher:
    """Finds tickers in text given the watchlist (ticker -> aliases)."""

    watchlist: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        alias_map: dict[str, str] = {}
        for ticker, aliases in self.watchlist.items():
            for alias in aliases:
                if alias.strip():
                    alias_map[alias.strip().lower()] = ticker
        self._alias_to_ticker = alias_map
        names = sorted(self._alias_to_ticker, key=len, reverse=True)
        self._alias_re = (re.compile(r"(?<![\w&])(" + "|".join(re.escape(n) for n in names) + r")(?![\w&])",
                                     re.IGNORECASE) if names else None)
        bare = sorted((t for t in self.watchlist if len(t) >= BARE_MIN_LEN), key=len, reverse=True)
        self._bare_re = (re.compile(r"(?<![\w$])#?(" + "|".join(re.escape(t) for t in bare) + r")(?![\w])")
                         if bare else None)

    def extract(self, text: str, hints: Iterable[str] = ()) -> list[str]:
        """Tickers in `text` plus `hints` (tickers the source gave), sorted and unique."""
        found = {normalise_ticker(h) for h in hints if h}
        found.update(m.group(1).upper() for m in CASHTAG.finditer(text or ""))
        if self._alias_re is not None:
            found.update(self._alias_to_ticker[m.group(1).lower()] for m in self._alias_re.finditer(text or ""))
        if self._bare_re is not None:
            found.update(m.group(1) for m in self._bare_re.finditer(text or ""))
        return sorted(t for t in found if TICKER.match(t))


def load_enricher(session: Session) -> Enricher:
    """An `Enricher` for the active watchlist in the database."""
    rows = session.execute(select(WatchlistEntry.ticker, WatchlistEntry.aliases)
                           .where(WatchlistEntry.active.is_(True))).all()
    return Enricher({ticker: list(aliases or []) for ticker, aliases in rows})


def ensure_default_watchlist(session: Session) -> int:
    """Add the demo tickers with their company-name aliases (existing entries are kept); returns how many added."""
    existing = set(session.scalars(select(WatchlistEntry.ticker)))
    added = 0
    for ticker, (name, aliases) in DEFAULT_WATCHLIST.items():
        if ticker not in existing:
            session.add(WatchlistEntry(ticker=ticker, name=name, aliases=aliases, active=True))
            added += 1
    session.flush()
    return added
