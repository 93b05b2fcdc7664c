"""The benchmarks, one module per subject (``matten-bench bench …`` calls them; results/benchmarks.md has the runs).

    data.py     video decoding and the training DataLoader: clips/s, against the GPU's appetite
    models.py   the selective-scan backends, Latte-XL/2 vs Matten-XL/2 steps, the Mamba mixer vs attention
    train.py    the pure training step and the real `train` loop at the same shape (loop / pure)
    fvd.py      I3D throughput and the precisions of the FVD pass
"""
