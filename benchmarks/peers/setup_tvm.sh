#!/usr/bin/env bash
# The Apache TVM 0.27 peer venv (benchmarks/.venv-tvm). Last stdout line: its python.
exec bash "$(dirname "${BASH_SOURCE[0]}")/setup_peer.sh" tvm "tvm, tvm_ffi, numpy" "apache-tvm==0.27.0.post1" numpy
