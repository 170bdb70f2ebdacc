"""Models and training: ``weightsources`` (offline pretrained weights), ``models`` (VGG-16, ViT),
``features`` (the feature model Psi, feature caching), ``experimentconfig`` (what one run is),
``fitting`` (the one training loop), ``train`` (one domain, one experiment), ``evaluate`` and
``retrievalmetrics`` (classification and retrieval metrics), ``indexes`` (search), ``quantize``
(int8) and ``keyaware`` (key-aligned cipher and model transform). Imports the base, the core and
the data layer."""
