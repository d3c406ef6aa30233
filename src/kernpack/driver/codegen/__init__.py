"""Code generators: kernel IR to LLVM IR, one module per target."""
