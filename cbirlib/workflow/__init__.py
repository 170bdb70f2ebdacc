"""The jobs of the Snakemake workflow (``workflow/Snakefile``) and the driver that runs it: the
book's jobs (:mod:`.bookjobs`), variant books of non-default runs (:mod:`.variants`), sweeps
(:mod:`.sweeps`), the Snakemake driver with its status line (:mod:`.driver`) and the command line
``python -m cbirlib.workflow`` (:mod:`.commands`).

Two kinds of work go through the same engine:

- **the book**: one job per chapter notebook (papermill), in parallel where the chapters'
  dependencies allow (:data:`.bookjobs.UPSTREAM`), after jobs that compute the frozen-trunk
  features the chapters share (:func:`.bookjobs.feature_groups`, :func:`.bookjobs.chapter_features`
  and the key-aware study's own job; cached by content, :mod:`cbirlib.learning.features`);
- **sweeps**: a YAML file in ``workflow/sweeps/`` describes a grid of a chapter's parameters;
  every point of the grid is one job that writes its own folder of tidy results, and one
  aggregation job per sweep joins them into ``results/sweeps/<name>/`` with intervals. An
  interrupted sweep reruns only the points that are missing.

:func:`.driver.run` starts Snakemake on the machine's cores (or on a cluster through a workflow
profile in ``workflow/profiles/``), keeps its log in ``build/logs/`` and prints what runs, how far
each chapter is and the time left, estimated from the last recorded run.

Sweep file::

    name: classification            # results/sweeps/<name>/
    chapter: 02_classification      # the chapter that reads the results
    kind: classification            # the point runner: classification or attacks (:data:`.sweeps.KINDS`)
    label: sweep-cpu                # how the book labels these results
    description: ...
    fixed: {data: default, ...}     # parameters of every point
    resources: {threads: 1, mem_mb: 6000, runtime: 60}   # per job; gpu: 1 for a GPU
    arms:                           # sub-grids, each its own fixed values and grid
      - name: end-to-end ViT
        fixed: {model: vit, trainable: all}
        grid: {domain: [plain, 8, 1], key_mode: [per-image, shared], seed: [0], fold: all}

``fold: all`` means every fold of the point's split scheme; the plaintext domain has no key, so
its ``key_mode: shared`` copies are dropped.
"""
