"""cma-harness: boot patched ARM kernels in QEMU and test CMA over the serial console."""
