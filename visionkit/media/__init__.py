"""Files at the edge: images read upright (EXIF orientation applied) and their sizes
(:mod:`~visionkit.media.imageio`, :mod:`~visionkit.media.fastread`), and atomic writes
(:mod:`~visionkit.media.atomic`).

Layer: above :mod:`visionkit.core`.
"""
