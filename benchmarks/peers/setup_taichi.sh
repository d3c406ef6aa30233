#!/usr/bin/env bash
# The Taichi peer venv (benchmarks/.venv-taichi; its Vulkan backend runs on Mesa's lavapipe). Last stdout line: its python.
exec bash "$(dirname "${BASH_SOURCE[0]}")/setup_peer.sh" taichi "taichi, numpy" "taichi==1.7.4" "numpy<2"
