"""TFLite export: ``kdtool export`` converts .keras models (float32, float16, dynamic, int8) and checks them.

Public API (TensorFlow is imported only when these run):

- :func:`kdtool.export.pipeline.export_models` with :class:`kdtool.export.options.ExportOptions`: the whole command.
- :data:`kdtool.export.modes.QUANT_MODES`: mode name -> converter-configuring function.
- :func:`kdtool.export.convert.load_keras_model`, :func:`~kdtool.export.convert.representative_dataset`,
  :func:`~kdtool.export.convert.convert_model`, :func:`~kdtool.export.convert.write_export`.
- :func:`kdtool.export.operating_point.set_operating_point`: the operating point (objective, min recall,
  temperature; :mod:`kdtool.export.objectives`) folded into the output layer.
- :func:`kdtool.export.check.run_tflite`, :func:`~kdtool.export.check.io_details`,
  :func:`~kdtool.export.check.compare`.
"""
