"""Physics validation: baselines, hold-outs, detuning and importance studies."""
