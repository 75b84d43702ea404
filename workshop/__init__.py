"""Small shared helpers of the Ray workshop: flags, result file, synthetic data, the tour, the test cluster."""
