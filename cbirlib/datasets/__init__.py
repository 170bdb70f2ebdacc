"""The data layer: ``assets`` (scans and radiographs inside registry packages, verified),
``volumes`` and ``radiographs`` (reading them), ``splits`` (slab and held-out-patient splits),
``defaultdata`` (building the default dataset) and ``data`` (opening a dataset: the default one or
a folder with one sub-folder per class). Imports only the base modules of :mod:`cbirlib`."""
