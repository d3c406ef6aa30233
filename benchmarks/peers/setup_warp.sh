#!/usr/bin/env bash
# The NVIDIA Warp peer venv (benchmarks/.venv-warp; its CPU backend needs no GPU). Last stdout line: its python.
exec bash "$(dirname "${BASH_SOURCE[0]}")/setup_peer.sh" warp "warp, numpy" "warp-lang==1.10.1" numpy
