"""Small shared helpers of the Ray workshop: the common flags and result file, synthetic data, the packaged
models, and what the servers share. Both sides of a pair use them identically; none holds the parallel code
the workshop teaches."""
