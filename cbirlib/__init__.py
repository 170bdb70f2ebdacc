"""cbirlib: the library behind the companion book to "Balancing Privacy and Performance:
Exploring Encryption and Quantization in Content-Based Image Retrieval Systems".

Modules, one job each: ``assets`` (offline sources), ``volumes`` (reading and slicing scans),
``data`` (datasets), ``models`` (VGG-16 / ViT with offline weights), ``provenance`` (what a run
used), ``plots`` (figures), ``cli`` (the ``cbir`` command).
"""

__version__ = "0.1.0"
