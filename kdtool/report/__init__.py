"""``kdtool report``: a model card (``<model>.MODEL_CARD.md``) for each exported model, without TensorFlow.

It reads what the other commands wrote and never imports them: the export sidecars and ``.tflite``
files (:mod:`kdtool.report.collect`), the run folder's ``run.json``, the data folder, and bench JSON
records, given with ``--bench`` or made by running ``kdtool bench`` in a child process
(:mod:`kdtool.report.measure`). :mod:`kdtool.report.plots` draws the ROC and reliability PNGs,
:mod:`kdtool.report.sections` and :mod:`kdtool.report.card` write the card.

Example:
    >>> from kdtool.report.card import CARD_SUFFIX
    >>> CARD_SUFFIX
    '.MODEL_CARD.md'
"""
