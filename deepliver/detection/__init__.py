"""2D tumor-detection datasets (boxes, Pascal VOC and YOLO files) cut from 3D CT label maps."""
