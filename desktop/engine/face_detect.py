"""Finding faces in a picture with OpenCV, for the face fix (desktop/engine/faces.py).

"auto" runs the Haar cascades that come inside OpenCV (``cv2.data.haarcascades``: frontal faces with two
cascades, faces in profile looking either way), so nothing is downloaded. They find upright faces of at least
`MIN_FACE` of the picture's shorter side; boxes of one face found by several cascades are merged. A person who
wants a better detector adds YuNet (``face_detection_yunet_2023mar.onnx``, MIT, from the OpenCV model zoo):
given as a path, or put in ``<models folder>/detectors`` (Sfumato's own, or any added models folder), where
"auto" then uses it instead of the cascades. It runs with ``cv2.FaceDetectorYN``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from desktop.core import paths
from desktop.core.errors import SfumatoError
from desktop.core.faces import AUTO_DETECTOR, FaceBox

DETECTOR_SUBFOLDER = "detectors"
YUNET_PATTERN = "face_detection_yunet*.onnx"
CASCADES = ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml", "haarcascade_profileface.xml")
MIN_FACE = 0.04  # the smallest face looked for, as a share of the picture's shorter side (at least 24 pixels)
MERGE_OVERLAP = 0.3  # boxes overlapping by more than this (intersection over the smaller box) are one face
YUNET_SCORE = 0.6


def import_cv2():
    """OpenCV, or one sentence saying how to install it."""
    try:
        import cv2

        cv2.CascadeClassifier  # noqa: B018 - OpenCV 5 removed it
        return cv2
    except (ImportError, AttributeError):
        raise SfumatoError("Finding faces needs OpenCV 4, which is missing or broken: pip install "
                           "\"opencv-python-headless>=4.8,<5\"") from None


def detect(image: np.ndarray, detector: str = AUTO_DETECTOR, models_folders: Iterable[str | os.PathLike] = ()
           ) -> list[FaceBox]:
    """The faces in `image` (HxWx3 uint8 RGB), largest first."""
    cv2 = import_cv2()
    rgb = np.ascontiguousarray(image[..., :3])
    if detector == AUTO_DETECTOR:
        found = yunet_file(models_folders)
        boxes = _yunet(cv2, rgb, found) if found is not None else _cascades(cv2, rgb)
    else:
        path = Path(detector).expanduser()
        if not path.is_file() or path.suffix.lower() != ".onnx":
            raise SfumatoError(f"The face detector {path.name} is not a YuNet .onnx file; give the path of "
                               "face_detection_yunet_2023mar.onnx, or use the automatic detector.")
        boxes = _yunet(cv2, rgb, path)
    return sorted(boxes, key=lambda box: -box.width * box.height)


def detector_name(detector: str = AUTO_DETECTOR, models_folders: Iterable[str | os.PathLike] = ()) -> str:
    """What finds the faces, as the metadata names it: the YuNet file's name, or "OpenCV Haar cascades"."""
    if detector != AUTO_DETECTOR:
        return Path(detector).name
    found = yunet_file(models_folders)
    return found.name if found is not None else "OpenCV Haar cascades"


def detector_folders(models_folders: Iterable[str | os.PathLike] = ()) -> list[Path]:
    return [paths.models_dir() / DETECTOR_SUBFOLDER,
            *(Path(folder).expanduser() / DETECTOR_SUBFOLDER for folder in models_folders)]


def yunet_file(models_folders: Iterable[str | os.PathLike] = ()) -> Path | None:
    """The YuNet file the person added to a detectors folder (the newest name first), None when there is none."""
    for folder in detector_folders(models_folders):
        try:
            found = sorted(folder.glob(YUNET_PATTERN), reverse=True)
        except OSError:
            continue
        if found:
            return found[0]
    return None


def _cascades(cv2, rgb: np.ndarray) -> list[FaceBox]:
    gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    height, width = gray.shape
    smallest = max(24, int(min(height, width) * MIN_FACE))
    boxes: list[FaceBox] = []
    for name in CASCADES:
        cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, name))
        if cascade.empty():
            raise SfumatoError(f"OpenCV's face cascade {name} is missing; reinstall it: pip install --force-reinstall "
                               "\"opencv-python-headless>=4.8,<5\"")
        frontal = "profile" not in name
        views = [(gray, False)] if frontal else [(gray, False), (np.ascontiguousarray(gray[:, ::-1]), True)]
        for picture, mirrored in views:  # the profile cascade finds faces looking one way: mirror for the other
            found = cascade.detectMultiScale(picture, scaleFactor=1.1, minNeighbors=5 if frontal else 6,
                                             minSize=(smallest, smallest))
            for x, y, w, h in (found if len(found) else ()):
                x = width - x - w if mirrored else x
                boxes.append(FaceBox(int(x), int(y), int(w), int(h), 1.0 if frontal else 0.8))
    return merge(boxes)


def _yunet(cv2, rgb: np.ndarray, path: Path) -> list[FaceBox]:
    height, width = rgb.shape[:2]
    try:
        model = cv2.FaceDetectorYN.create(str(path), "", (width, height), YUNET_SCORE)
        _, faces = model.detect(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    except cv2.error:
        raise SfumatoError(f"The face detector {path.name} could not be run; it is damaged or not a YuNet model. "
                           "Download face_detection_yunet_2023mar.onnx again.") from None
    boxes = []
    for face in faces if faces is not None else ():
        x, y, w, h = (int(round(v)) for v in face[:4])
        x, y = max(0, x), max(0, y)
        w, h = min(w, width - x), min(h, height - y)
        if w > 0 and h > 0:
            boxes.append(FaceBox(x, y, w, h, float(face[-1])))
    return merge(boxes)


def merge(boxes: list[FaceBox]) -> list[FaceBox]:
    """One box per face: a box overlapping a kept one (by MERGE_OVERLAP of the smaller) joins it, the kept box
    growing to their union; the most confident and largest are kept first."""
    kept: list[FaceBox] = []
    for box in sorted(boxes, key=lambda b: (-b.score, -b.width * b.height)):
        for index, other in enumerate(kept):
            if _overlap(box, other) > MERGE_OVERLAP:
                x, y = min(box.x, other.x), min(box.y, other.y)
                right = max(box.x + box.width, other.x + other.width)
                bottom = max(box.y + box.height, other.y + other.height)
                kept[index] = FaceBox(x, y, right - x, bottom - y, other.score)
                break
        else:
            kept.append(box)
    return kept


def _overlap(a: FaceBox, b: FaceBox) -> float:
    w = min(a.x + a.width, b.x + b.width) - max(a.x, b.x)
    h = min(a.y + a.height, b.y + b.height) - max(a.y, b.y)
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / min(a.width * a.height, b.width * b.height)
