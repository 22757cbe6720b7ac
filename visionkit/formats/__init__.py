"""Dataset formats, one module each: ``instances`` (shared geometry), ``coco_read`` (COCO -> Detections),
``keypoints`` (point answers as COCO keypoints), ``yolo`` (Ultralytics), ``dataset`` (export a run to a
dataset folder) and ``supervision`` (interop with the supervision library, optional extra).

Nothing heavy is imported here; import the module you need.
"""
