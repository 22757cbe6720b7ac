"""Dataset formats, one module each: ``coco`` (Detections -> a COCO dataset), ``coco_read``
(COCO -> Detections), ``instances`` (the geometry every format shares), ``keypoints`` (point answers as COCO
keypoints), ``yolo`` (Ultralytics), ``label_studio`` (Label Studio pre-annotations), ``hf`` (a Hugging Face
``imagefolder``), ``supervision`` (interop with the supervision library, optional extra), and ``export`` (a
finished run -> a dataset folder) with its helpers ``splits`` (seeded splits) and ``upright`` (image copies).

A new dataset format is one module here. Layer: above :mod:`visionkit.core` and :mod:`visionkit.media`.
Nothing heavy is imported here; import the module you need.
"""
