"""Where a tool writes its drawing of an input image (``tools/predict.py``,
``tools/browse_dataset.py``): the image's path under its folder, mirrored under the
output folder, so that images of the same name in different sub-folders stay apart."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

__all__ = ["mirrored_output_path"]


def mirrored_output_path(
    output: Path, image_root: Optional[Union[str, Path]], file_name: str
) -> Path:
    """``file_name``'s path relative to ``image_root`` (its bare name without a root, or
    for an image outside it) under ``output``; refuses (``SystemExit``, one line) a target
    that is the image itself."""
    source = Path(file_name).resolve()
    try:
        relative = source.relative_to(Path(image_root).resolve()) if image_root else Path(source.name)
    except ValueError:  # an image outside its image folder
        relative = Path(source.name)
    target = Path(output) / relative
    if target.resolve() == source:
        raise SystemExit(f"--output {output} would overwrite the image {source}")
    return target
