"""cbirlib: the library behind the companion book to "Balancing Privacy and Performance:
Exploring Encryption and Quantization in Content-Based Image Retrieval Systems".

Modules, one job each, in layers, one sub-package per layer (lowest first; a module imports only
from its own layer and those below it that README's "Layout" names, checked by
tests/test_architecture.py):

- base, this package's own modules: ``paths``, ``provenance``, ``results`` (tidy CSVs with
  provenance), ``runtime``, ``paper`` (the paper's numbers), ``profiles`` (ci / cpu / paper),
  ``stats``;
- :mod:`cbirlib.core`: ``keys``, ``keyexpansion``, ``schedule`` and ``cipher`` (MTCE),
  ``imagemetrics`` and ``keyspace`` (judging the cipher), ``attacks`` and ``knownplaintext``;
- :mod:`cbirlib.datasets`: ``assets`` (offline sources), ``volumes``, ``radiographs``, ``splits``,
  ``defaultdata``, ``data`` (datasets);
- :mod:`cbirlib.learning`: ``weightsources`` (offline pretrained weights), ``models`` (VGG-16 /
  ViT), ``features`` (the feature model Psi), ``experimentconfig``, ``fitting`` (the training
  loop), ``train`` and ``evaluate`` (classification), ``indexes`` and ``retrievalmetrics`` (search
  and its metrics), ``quantize`` (int8), ``keyaware``;
- :mod:`cbirlib.protocol`: ``retrieval`` (owner, server, user, store), ``imagefiles`` (encrypted PNGs);
- :mod:`cbirlib.reporting`: ``scorecard``, ``claims`` and ``verdicts`` (the scorecard's claims and
  rules), ``sweeptables``, ``plots`` and ``securityplots``, ``book``;
- :mod:`cbirlib.studies` (the chapters' runs): ``cipherstudy``, ``classificationstudy``,
  ``retrievalstudy``, ``quantstudy``, ``securitystudy``, ``keyawarestudy``, ``attacksweep``,
  ``parameters``, ``chapters`` (every chapter's typed configuration);
- entry: ``cli`` (the ``cbir`` command) and ``device`` (a lent GPU) here, :mod:`cbirlib.workflow`
  (Snakemake jobs and their driver).
"""

from . import runtime

__version__ = "0.1.0"

runtime.tune_gc()  # the heavy imports that follow (torch, timm, pandas) skip most full collections
