"""Entry points: the `mmcurate` CLI and one `python -m ray_jobs.<job>` module per stage."""
