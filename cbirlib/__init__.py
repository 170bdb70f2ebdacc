"""cbirlib: the library behind the companion book to "Balancing Privacy and Performance:
Exploring Encryption and Quantization in Content-Based Image Retrieval Systems".

Modules, one job each, in layers (lowest first; a module imports only from its own layer and
those below it that README's "Layout" names, checked by tests/test_architecture.py):

- base: ``paths``, ``provenance``, ``results`` (tidy CSVs with provenance), ``runtime``,
  ``paper`` (the paper's numbers), ``profiles`` (ci / cpu / paper), ``stats``;
- core: ``keys``, ``keyexpansion``, ``schedule`` and ``cipher`` (MTCE), ``imagemetrics`` and
  ``keyspace`` (judging the cipher), ``attacks`` and ``knownplaintext``;
- data: ``assets`` (offline sources), ``volumes``, ``radiographs``, ``splits``, ``defaultdata``,
  ``data`` (datasets);
- models: ``weightsources`` (offline pretrained weights), ``models`` (VGG-16 / ViT),
  ``features`` (the feature model Psi), ``train`` and ``evaluate`` (classification),
  ``indexes`` and ``retrievalmetrics`` (search and its metrics), ``quantize`` (int8), ``keyaware``;
- protocol: ``retrieval`` (owner, server, user, store), ``imagefiles`` (encrypted PNGs);
- reporting: ``scorecard``, ``sweeptables``, ``plots``, ``book``;
- studies, the sub-package :mod:`cbirlib.studies` (the chapters' runs): ``cipherstudy``,
  ``classificationstudy``, ``retrievalstudy``, ``quantstudy``, ``securitystudy``,
  ``keyawarestudy``, ``attacksweep``, ``parameters``;
- entry: ``cli`` (the ``cbir`` command), ``workflow`` (Snakemake jobs), ``device`` (a lent GPU).
"""

__version__ = "0.1.0"
