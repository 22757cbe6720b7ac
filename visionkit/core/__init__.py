"""The numeric core, pure and IO-free: the :class:`~visionkit.core.detections.Detections` type and its
:class:`~visionkit.core.maskcrop.MaskCrop` masks, Gemini's 0-1000 grid (:mod:`~visionkit.core.boxes`, the
only module that knows it), mask decoding and encoding (masks, maskpng, polygons, rle), label text,
token accounting, and the operations on Detections that a label run uses (overlap, dedupe).

Layer: imports only :mod:`visionkit.errors`. Nothing heavy is imported here; import the module you need.
"""
