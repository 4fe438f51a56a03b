"""Throughput: textgym PPO against SB3 PPO, the torch vector env against SyncVectorEnv, generation
scaling with the KV cache. The same as `textgym bench`.

    python benchmarks/throughput.py [--device cuda] [--quick]
"""

import sys

from textgym.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
