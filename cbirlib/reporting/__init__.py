"""Reporting: ``scorecard`` (the paper's claims judged from the results; the claims in ``claims``,
the rules in ``verdicts``), ``sweeptables`` (a sweep's tables with intervals), ``plots`` and
``securityplots`` (the book's figures), and ``book`` (building and checking the Jupyter Book).
Never imports a study."""
