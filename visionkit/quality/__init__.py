"""The quality loop: from "labels written" to "labels I can trust".

* :func:`~visionkit.quality.dedupe.dedupe`: drop near-duplicates within an image, without scores.
* :mod:`~visionkit.quality.consensus`: match objects across runs; score = fraction of runs that found them.
* :mod:`~visionkit.quality.evaluate`: COCOeval against ground truth, joined by file name and class name.
* :mod:`~visionkit.quality.report`: a static HTML review page for a run folder.

Submodules are imported when used, so importing this package stays light.
"""
