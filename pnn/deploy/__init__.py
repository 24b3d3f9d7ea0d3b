"""Using trained models outside training: scores back into ntuples, ONNX export."""
