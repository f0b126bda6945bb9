#!/usr/bin/env python3
"""Regenerates every golden file: runs each gen_*.py in this folder.

Usage: /usr/bin/python3 tests/reference/generate.py   (Debian's python3 with python3-torch;
       or scripts/run.sh golden)
The outputs in tests/golden/ are committed, so the test suite never needs PyTorch.
"""
import glob
import os
import runpy
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
for script in sorted(glob.glob(os.path.join(here, "gen_*.py"))):
    print("generating with", os.path.basename(script))
    runpy.run_path(script, run_name="__main__")
