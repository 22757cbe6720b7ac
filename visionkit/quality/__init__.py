"""The quality loop: from "labels written" to "labels I can trust".

* :mod:`~visionkit.quality.consensus`: match objects across runs; score = fraction of runs that found them.
* :mod:`~visionkit.quality.evaluate`: COCOeval against ground truth, joined by file name and class name.
* :mod:`~visionkit.quality.report`: a static HTML review page for a run folder.

Within-image dedupe is a pure operation on Detections used by ``label --dedupe``, so it lives in
:mod:`visionkit.core.dedupe`. Layer: above :mod:`visionkit.run`.

Submodules are imported when used, so importing this package stays light.
"""
