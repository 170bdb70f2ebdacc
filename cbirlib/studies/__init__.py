"""The studies wing: one module per chapter's runs (``cipherstudy`` 01, ``classificationstudy``
02, ``retrievalstudy`` 03, ``quantstudy`` 04, ``securitystudy`` 05, ``keyawarestudy`` 06), the
attacks sweep's points (``attacksweep``), a notebook's parameter checks (``parameters``) and every
chapter's typed configuration (``chapters``: the setup cell of each notebook).
Studies may use every module of the package outside ``cli``, ``device`` and :mod:`cbirlib.workflow`; nothing
below them imports a study (tests/test_architecture.py)."""
