"""`python -m graphc.benchmarks [--quick] [--workloads W1,W3] [--dtype float32] ...`"""
import sys

from graphc.benchmarks.harness import main

sys.exit(main())
