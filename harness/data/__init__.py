"""Data: prepare a dataset (layouts → probe → manifest), the synthetic generator, clips for training and FVD.

    synthetic.py  real video files of moving shapes in UCF101's layout
    layouts.py    where each dataset keeps its videos (ucf101, ffs, sky, taichi)
    probe.py      frame count, fps, size of one video or frame folder, or why it is unusable
    manifest.py   manifest.parquet + dataset.json: write, load, fingerprint
    prepare.py    the prepare stage (ledger, fingerprint reuse, skipped videos)
    clips.py      ClipDataset (Latte's sampling) and eval_clips (fixed real clips for FVD)
"""
