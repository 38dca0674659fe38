"""Curation stages: small functions over pipeline rows (`curation.rows`), one job each."""
