#!/usr/bin/env python
"""recforge with dense embedding gradients for every table (model option sparse=False: torch's
fused dense Adam over whole tables, the default before sparse=auto); see run_recforge.py."""
import sys

import run_recforge

if __name__ == "__main__":
    run_recforge.main(sys.argv[1:] + ["--dense-emb"])
