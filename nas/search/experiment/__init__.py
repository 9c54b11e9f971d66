"""Experiments: studies created, resumed and read (`study`, `evidence`), the confirm stage
(`confirm`), the fidelity study (`fidelity`) and tabular benchmarks (`bench`)."""
