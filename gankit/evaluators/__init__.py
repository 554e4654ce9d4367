"""Trained domain evaluators (safetensors + JSON), made by `gankit evaluator train NAME`."""
