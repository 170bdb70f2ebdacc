"""The core: the MTCE cipher and what judges it. ``keys`` (key material, derivations, key files),
``keyexpansion`` and its compiled kernels (keys into permutations), ``schedule`` (a key's expanded
steps), ``cipher`` (Algorithm 1, exactly reversible), ``imagemetrics`` and ``keyspace`` (Table V,
eqs. 1-5), ``attacks`` (jigsaw solver, ciphertext statistics) and ``knownplaintext``. Imports only
the base modules of :mod:`cbirlib`."""
