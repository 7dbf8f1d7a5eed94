"""The selection-quality benchmark (issue 9): every arm selects from the synthetic pool and
trains the tiny Qwen2-VL with one fixed recipe over several seeds; prints the table and each
paper's claim, reproduced or not, and writes them into bench/README.md.

    python bench/quality.py                      # the default run (~30 min on 2 cores)
    python bench/quality.py --seeds 1 --lines 1000 --arms full,random-30,mmssr-30  # a quick look

Same as `mmcurate bench quality --readme bench/README.md`; see ray_jobs/quality.py.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ray_jobs.quality import main  # noqa: E402

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--readme" not in argv:
        argv += ["--readme", os.path.join(os.path.dirname(os.path.abspath(__file__)), "README.md")]
    raise SystemExit(main(argv))
