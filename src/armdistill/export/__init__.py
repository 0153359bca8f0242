"""Students out of the project: transformers directories (``hf``) and ONNX Runtime models (``onnx``)."""
