"""The compile side of kernpack: llvmlite, code generators, the linker driver."""
