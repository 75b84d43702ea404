"""Workshop tooling a learner runs but never needs to read: fault injection, the tour, test clusters."""
