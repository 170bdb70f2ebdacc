"""cbirlib: the library behind the companion book to "Balancing Privacy and Performance:
Exploring Encryption and Quantization in Content-Based Image Retrieval Systems".

Modules, one job each: ``assets`` (offline sources), ``volumes`` (reading and slicing scans),
``data`` (datasets), ``models`` (VGG-16 / ViT with offline weights, the feature model Psi),
``keys``, ``keyexpansion`` and ``cipher`` (MTCE), ``imagefiles`` (encrypted PNG files), ``imagemetrics`` and
``keyspace`` (judging the cipher), ``train`` and ``evaluate`` (classification), ``retrieval``
(owner, server, user, indexes, metrics), ``quantize`` (int8), ``profiles`` (ci / cpu / paper),
``paper`` (the paper's numbers), ``results`` and ``provenance`` (tidy CSVs with provenance),
``plots`` (figures), ``cipherstudy`` / ``retrievalstudy`` / ``quantstudy`` (the chapters' runs)
and ``cli`` (the ``cbir`` command).
"""

__version__ = "0.1.0"
