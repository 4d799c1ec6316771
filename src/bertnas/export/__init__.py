"""Deploying a finished run's student: ONNX export, checked against PyTorch, optional int8 quantization."""
