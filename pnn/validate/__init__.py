"""Physics validation: baselines, hold-outs, detuning, importance and conditioning studies."""
