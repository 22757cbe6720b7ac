"""Drawing detections: :func:`~visionkit.draw.overlay.draw_overlay`, where tags go
(:mod:`~visionkit.draw.tag_layout`), fonts (:mod:`~visionkit.draw.fonts`), and overlay files
(:mod:`~visionkit.draw.overlay_files`).

Layer: above :mod:`visionkit.core` and :mod:`visionkit.media`.
"""
