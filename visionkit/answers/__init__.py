"""What the model said -> :class:`~visionkit.core.detections.Detections`: the response envelope
(:mod:`~visionkit.answers.response`), the answer's JSON, recovered when fenced, wrapped or cut off
(:mod:`~visionkit.answers.answer_json`), and :func:`~visionkit.answers.parse.parse_response`.

Layer: above :mod:`visionkit.core`; no file or network IO.
"""
