"""Teacher fine-tuning and knowledge distillation (needs the ``[train]`` extra).

Submodules import TensorFlow/Keras; import them lazily from the CLI.
"""
