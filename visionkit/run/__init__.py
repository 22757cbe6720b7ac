"""A label run: which images (inputs, keys), where each answer comes from (replay, the saved responses,
the API; :mod:`~visionkit.run.answer_source`), the per-image step, the process pool, the output folder
(lock, spool, outputs, usage, warnings, summary), ``--dry-run`` (plan), re-asks, redraws and the Batch
path (batching, batch_steps).

Layer: above :mod:`visionkit.gemini`; below :mod:`visionkit.quality` and :mod:`visionkit.cli`.
"""
