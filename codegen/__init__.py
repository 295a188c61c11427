"""Code generation: fusion plans -> CUDA C kernels, and the devices that run them."""
